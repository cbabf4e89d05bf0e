#!/usr/bin/env bash
# The seed setup's last step on this machine: a brute-force run makes the SSH alarms
# fire, and the alarm topic's notification arrives. No AWS account needed.
#
# It starts LocalStack's community runtime (which, unlike moto, evaluates CloudWatch
# alarms and runs their SNS actions; installed by scripts/setup-localstack-env.sh),
# runs `sshwatch bootstrap` (log group, alarms, topic), subscribes an SQS
# queue to the alarm topic, runs `sshwatch run` on a log that receives real sshd
# attack lines, then prints each alarm's transition to ALARM and the notification
# the queue received (subject, NewStateValue, NewStateReason, the trigger), and the
# alarms' return to OK once the attack is over. It takes three to four minutes:
# LocalStack evaluates each alarm every 60 s, sshwatch publishes the attack's
# minute when it ends, and that minute leaves the range LocalStack evaluates
# three minutes after it began.
#
# The queue stands in for the email subscription of the seed setup: an email
# subscription must be confirmed from the mailbox, which cannot happen locally.
# An SQS subscription needs no confirmation and gets the same message.
#
#   scripts/alarm-demo.sh [--check] [FIXTURE]
#
# FIXTURE (default: an OpenSSH 9.2 auth.log with a password-guessing run) must hold
# more than five lines of each kind the seed alarms count. With --check it prints
# every expectation as PASS or FAIL and exits non-zero if one failed; when this
# machine has no Python >= 3.12 (LocalStack needs one) it says so and exits 0.
# Without --check a missing Python is an error. KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)

check=no
fixture=tests/fixtures/sshd/lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log
for arg in "$@"; do
    case "$arg" in
        --check) check=yes ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "alarm-demo: unknown option $arg" >&2; exit 2 ;;
        *) fixture=$arg ;;
    esac
done
[ -f "$fixture" ] || { echo "alarm-demo: no such file: $fixture" >&2; exit 2; }

status=0
scripts/setup-localstack-env.sh || status=$?
if [ "$status" -eq 3 ]; then
    if [ $check = yes ]; then
        echo "alarm-demo: skipped: this machine has no Python >= 3.12, which LocalStack needs (see above)"
        exit 0
    fi
    exit 1
elif [ "$status" -ne 0 ]; then
    exit "$status"
fi
py=.venv-localstack/bin/python

echo "alarm-demo: building sshwatch (release)" >&2
cargo build --release --quiet --bin sshwatch
bin="${CARGO_TARGET_DIR:-target}/release/sshwatch"

work="$(mktemp -d /var/tmp/sshwatch-alarm-demo.XXXXXX)"
ls_pid=""
daemon_pid=""
# stop PID [SECONDS]: SIGTERM, then SIGKILL if it is still there after SECONDS.
stop() {
    kill -TERM "$1" 2>/dev/null || return 0
    for _ in $(seq $((${2:-10} * 10))); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    [ -n "$daemon_pid" ] && stop "$daemon_pid"
    [ -n "$ls_pid" ] && stop "$ls_pid" 15
    if [ "${KEEP:-0}" = 1 ]; then echo "alarm-demo: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# On a failure, what the two servers said.
logs() {
    echo "alarm-demo: sshwatch's log:" >&2
    sed 's/^/  | /' "$work/sshwatch.log" >&2 2>/dev/null || true
    echo "alarm-demo: LocalStack's log (last 40 lines):" >&2
    tail -n 40 "$work/localstack.log" 2>/dev/null | sed 's/^/  | /' >&2 || true
}

# LocalStack on a free loopback port. It cannot pick one itself (the URLs it hands
# out, such as a subscription's, name the port), so a port taken between the choice
# and the bind means another try.
for attempt in 1 2 3; do
    port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    rm -rf "$work/localstack"
    mkdir -p "$work/localstack/cache"
    # OVERRIDE_IN_DOCKER=0: it is not in its container, whatever /.dockerenv says.
    # DNS_ADDRESS=0, DISABLE_EVENTS=1, SKIP_SSL_CERT_DOWNLOAD=1: no DNS server, no
    # analytics, no certificate download. FILESYSTEM_ROOT and XDG_CACHE_HOME keep
    # its files in the work directory (else /var/lib/localstack); PERSISTENCE=0
    # starts it empty.
    env OVERRIDE_IN_DOCKER=0 GATEWAY_SERVER=hypercorn \
        GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
        SERVICES=cloudwatch,logs,sns,sqs DNS_ADDRESS=0 DISABLE_EVENTS=1 \
        SKIP_SSL_CERT_DOWNLOAD=1 PERSISTENCE=0 \
        FILESYSTEM_ROOT="$work/localstack" XDG_CACHE_HOME="$work/localstack/cache" \
        "$py" -m localstack.runtime.main >"$work/localstack.log" 2>&1 &
    ls_pid=$!
    ready=no
    for _ in $(seq 1200); do
        kill -0 "$ls_pid" 2>/dev/null || break
        if grep -q '^Ready\.' "$work/localstack.log"; then ready=yes; break; fi
        sleep 0.1
    done
    [ $ready = yes ] && break
    echo "alarm-demo: LocalStack did not start on port $port (try $attempt of 3)" >&2
    tail -n 20 "$work/localstack.log" | sed 's/^/  | /' >&2
    stop "$ls_pid" 5
    ls_pid=""
done
[ -n "$ls_pid" ] || exit 1

# A fresh 12-digit access key id is a fresh account in LocalStack: nothing from
# another run can be seen.
account="$("$py" -c 'import random; print(random.randrange(10**11, 10**12))')"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID="$account" AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
echo "alarm-demo: LocalStack $("$py" -c 'import importlib.metadata as m; print(m.version("localstack-core"))') at $AWS_ENDPOINT_URL, account $account" >&2

heartbeat=SSHWatchHeartbeatAlarm
cat >"$work/sshwatch.toml" <<EOF
# The seed's defaults (log group "secure", the three SSH metric filters and their
# alarms: per-minute Sum above 5), pointed at a temporary log and state directory,
# with the alarm topic bootstrap creates. It has no email subscription: one could
# not be confirmed here (the demo subscribes an SQS queue instead).
[source]
file_path = "$work/secure"
state_dir = "$work/state"
# The log exists and is empty before the daemon starts: reading it from the
# beginning loses nothing, however late the daemon opens it.
start_position = "beginning"
poll_interval_seconds = 0.2

[logs]
log_stream_name = "{hostname}"
# Lines of the attack reach CloudWatch within a second, so their minute closes on time.
force_flush_interval = 1

[metrics]
grace_seconds = 1
# The demo times its alarm checks against the minute's end: no per-host offset.
publish_spread_seconds = 0
# LocalStack's community runtime extracts no metrics from embedded metric format
# events (sshwatch's default transport): publish with PutMetricData, which its
# alarms evaluate.
transport = "put_metric_data"

[notifications]
sns_topic_name = "ssh-alerts"

[heartbeat]
alarm_name = "$heartbeat"

# LocalStack answers GetDashboard for a dashboard that does not exist with
# InvalidParameterValue, where CloudWatch answers ResourceNotFound (the API's
# DashboardNotFoundError), which bootstrap relies on to create it: no dashboard here.
[dashboard]
enabled = false
EOF
: >"$work/secure"
"$bin" bootstrap --dry-run --config "$work/sshwatch.toml" >"$work/plan.json"

# The first call to each service starts it (a few seconds); done here, it leaves
# bootstrap's calls, and so the alarms' creation, without a pause.
"$py" - <<'EOF'
import boto3
boto3.client("cloudwatch").describe_alarms(AlarmNames=["warm-up"])
boto3.client("logs").describe_log_groups(logGroupNamePrefix="warm-up")
boto3.client("sns").list_topics()
boto3.client("sqs").list_queues()
EOF

# The alarms are evaluated every 60 s from their creation. Creating them at least
# a few seconds after a minute starts (and the attack right after) puts every
# evaluation a few seconds after the daemon publishes a minute, and keeps the
# attack in one minute.
second=$((10#$(date +%S)))
if [ "$second" -lt 4 ] || [ "$second" -gt 40 ]; then
    wait_s=$(((64 - second) % 60))
    echo "alarm-demo: waiting ${wait_s}s for the next minute to start" >&2
    sleep "$wait_s"
fi

echo
echo "== sshwatch bootstrap --config $work/sshwatch.toml =="
"$bin" bootstrap --config "$work/sshwatch.toml" 2>"$work/bootstrap.log" || { cat "$work/bootstrap.log" >&2; logs; exit 1; }

# The stand-in for the email: a queue subscribed to the topic bootstrap created.
"$py" - "$work/queue-url" <<'EOF'
import sys, boto3
sns, sqs = boto3.client("sns"), boto3.client("sqs")
topic = next(t["TopicArn"] for t in sns.list_topics()["Topics"] if t["TopicArn"].endswith(":ssh-alerts"))
url = sqs.create_queue(QueueName="ssh-alerts-inbox")["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
print(f"sns-subscription {arn}: created by this demo in place of an email address (no confirmation needed)")
open(sys.argv[1], "w").write(url)
EOF

echo
echo "== sshwatch run --config $work/sshwatch.toml =="
"$bin" run --config "$work/sshwatch.toml" 2>"$work/sshwatch.log" &
daemon_pid=$!

total="$(grep -c . "$fixture")"
counts="$("$bin" classify --config "$work/sshwatch.toml" "$fixture")"
echo "appending $total real sshd lines from $fixture to $work/secure, as an attack arrives: $counts"
attack_at=$(date +%s.%N)
split -l 40 "$fixture" "$work/part."
for part in "$work"/part.*; do
    cat "$part" >>"$work/secure"
    sleep 0.3
done
echo "the attack is over at $(date -u +%H:%M:%S) UTC; sshwatch publishes its minute when the minute ends (grace_seconds 1)"
echo

watch_status=0
checking=()
[ $check = yes ] && checking=(--check)
"$py" scripts/alarm-demo-watch.py --plan "$work/plan.json" --queue-url "$(cat "$work/queue-url")" \
    --heartbeat "$heartbeat" --attack-at "$attack_at" "${checking[@]}" || watch_status=$?

stop "$daemon_pid"
daemon_pid=""
if [ "$watch_status" -ne 0 ]; then
    logs
    exit "$watch_status"
fi
echo "alarm-demo: done in $(($(date +%s) - started)) s"
