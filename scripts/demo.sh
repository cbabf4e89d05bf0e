#!/usr/bin/env bash
# sshwatch end to end on this machine, no AWS account needed: starts a local
# CloudWatch-compatible endpoint (moto, from the repo's .venv), runs
# `sshwatch run` on a temporary log, appends real sshd attack lines to it, then
# prints what arrived there: the log events and the per-minute `SSH` metrics,
# read back through the AWS SDK (boto3 from the same venv), and which of the
# configured alarms those minutes would fire. moto stores alarms but does not
# evaluate them: scripts/alarm-demo.sh shows the real evaluation and notification.
#
#   scripts/demo.sh [FIXTURE]    (default: an OpenSSH 9.2 auth.log with a password-guessing run)
set -euo pipefail
cd "$(dirname "$0")/.."

fixture="${1:-tests/fixtures/sshd/lab-deb12-openssh9.2p1-rsyslog-traditional.auth.log}"
[ -f "$fixture" ] || { echo "demo: no such file: $fixture" >&2; exit 2; }

scripts/setup-test-env.sh
echo "demo: building sshwatch (release)" >&2
cargo build --release --quiet --bin sshwatch
bin="${CARGO_TARGET_DIR:-target}/release/sshwatch"
py=.venv/bin/python

work="$(mktemp -d)"
moto_pid=""
daemon_pid=""
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
    "$py" -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

cat >"$work/sshwatch.toml" <<EOF
# The seed's defaults (log group "secure", the three SSH metric filters),
# pointed at a temporary log and state directory.
[source]
file_path = "$work/secure"
state_dir = "$work/state"
poll_interval_seconds = 0.2

[logs]
log_stream_name = "{hostname}"

[metrics]
grace_seconds = 1
EOF
: >"$work/secure"

echo "demo: sshwatch run --config $work/sshwatch.toml (endpoint $AWS_ENDPOINT_URL)" >&2
"$bin" run --config "$work/sshwatch.toml" 2>"$work/sshwatch.log" &
daemon_pid=$!
sleep 0.5

total="$(grep -c . "$fixture")"
echo "demo: appending $total sshd lines from $fixture" >&2
# In a few bursts, as an attack arrives.
split -l 40 "$fixture" "$work/part."
for part in "$work"/part.*; do
    cat "$part" >>"$work/secure"
    sleep 0.3
done

# Wait until CloudWatch Logs holds every line, then stop sshwatch: SIGTERM
# flushes the last batch and publishes the open minute.
"$py" - "$total" <<'EOF'
import sys, time, boto3
want = int(sys.argv[1])
logs = boto3.client("logs")
deadline = time.time() + 30
while time.time() < deadline:
    try:
        pages = logs.get_paginator("filter_log_events").paginate(logGroupName="secure")
        n = sum(len(page["events"]) for page in pages)
    except logs.exceptions.ResourceNotFoundException:
        n = 0  # the group is created with the first batch
    if n >= want:
        break
    time.sleep(0.3)
EOF
kill -TERM "$daemon_pid"
wait "$daemon_pid" && status=0 || status=$?
daemon_pid=""
echo "demo: sshwatch exited with status $status; its log:" >&2
sed 's/^/  | /' "$work/sshwatch.log" >&2

# The alarms as `sshwatch bootstrap` would create them (every PutMetricAlarm, as JSON).
"$bin" bootstrap --dry-run --config "$work/sshwatch.toml" >"$work/plan.json"

"$py" - "$work/plan.json" <<'EOF'
import datetime as dt, json, operator, sys, boto3
logs = boto3.client("logs")

events = [e for page in logs.get_paginator("filter_log_events").paginate(logGroupName="secure")
          for e in page["events"]]
print(f"== CloudWatch Logs: log group `secure`, {len(events)} events ==")
for e in events:
    t = dt.datetime.fromtimestamp(e["timestamp"] / 1000, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
    print(f"{t}  {e['logStreamName']}  {e['message']}")

# sshwatch's default transport: one embedded metric format (EMF) event per minute, riding in the
# lines' own batches, from which CloudWatch extracts the metrics (moto does not: the values are
# read from the events here, as CloudWatch would take them, one datapoint per metric and event).
table, samples = {}, {}
for e in events:
    if not (e["message"].startswith("{") and '"_aws"' in e["message"]):
        continue
    doc = json.loads(e["message"])
    minute = dt.datetime.fromtimestamp(doc["_aws"]["Timestamp"] / 1000, dt.timezone.utc)
    for directive in doc["_aws"]["CloudWatchMetrics"]:
        for metric in directive["Metrics"]:
            name = metric["Name"]
            table.setdefault(minute, {})[name] = table.get(minute, {}).get(name, 0) + doc[name]
            samples.setdefault(minute, {})[name] = samples.get(minute, {}).get(name, 0) + 1
names = sorted({n for row in table.values() for n in row})
print()
print("== CloudWatch metrics: namespace `SSH`, Sum per minute (from the embedded metric format events) ==")
print("minute (UTC)      " + "  ".join(f"{n:>23}" for n in names))
for minute in sorted(table):
    print(minute.strftime("%Y-%m-%d %H:%M  ") + "  ".join(f"{table[minute].get(n, 0):>23g}" for n in names))
print("total             " + "  ".join(f"{sum(r.get(n, 0) for r in table.values()):>23g}" for n in names))

# Which minutes would put each configured alarm in ALARM, from what was published:
# an alarm's datapoint is its statistic over one period, and it is in ALARM after
# a period when at least DatapointsToAlarm of the last EvaluationPeriods datapoints
# breach; a missing datapoint breaches or not as TreatMissingData says ("missing"
# and "ignore": it does not count). It fires (notifies) on entering ALARM.
compare = {"GreaterThanThreshold": operator.gt, "GreaterThanOrEqualToThreshold": operator.ge,
           "LessThanThreshold": operator.lt, "LessThanOrEqualToThreshold": operator.le}
symbol = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=",
          "LessThanThreshold": "<", "LessThanOrEqualToThreshold": "<="}
plan = json.load(open(sys.argv[1]))
alarms = [c["parameters"] for c in plan["calls"] if c["operation"] == "PutMetricAlarm"]
print()
print("== Alarms (`sshwatch bootstrap --dry-run`): which published minutes would fire them ==")
if not table:
    print("no minute was published")
for a in alarms if table else []:
    period, n, m = a["Period"], a["EvaluationPeriods"], a["DatapointsToAlarm"]
    stat, threshold, op = a["Statistic"], a["Threshold"], a["ComparisonOperator"]
    missing = a.get("TreatMissingData", "missing")
    first = int(min(table).timestamp()) // period * period
    last = int(max(table).timestamp()) // period * period
    # The alarm's statistic per period, from the minutes' datapoints.
    value = {}
    for minute in table:
        if a["MetricName"] not in table[minute]:
            continue
        t = int(minute.timestamp()) // period * period
        add = samples[minute][a["MetricName"]] if stat == "SampleCount" else table[minute][a["MetricName"]]
        value[t] = value.get(t, 0) + add
    def breaches(t):
        if t in value:
            return compare[op](value[t], threshold)
        return {"breaching": True, "notBreaching": False}.get(missing)
    print(f"{a['AlarmName']}: {stat} of {a['Namespace']}/{a['MetricName']} per {period} s {symbol[op]} {threshold:g}, "
          f"{m} of the last {n} period{'s' if n > 1 else ''}, missing data: {missing}")
    in_alarm = [t for t in range(first, last + 1, period)
                if sum(breaches(t - i * period) is True for i in range(n)) >= m]
    if not in_alarm:
        print("  would not fire for any published minute")
    for t in range(first, last + 1, period):
        start = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M")
        shown = f"{stat} {value[t]:g}" if t in value else "no datapoint"
        if t in in_alarm:
            print(f"  {start} ({shown}): {'stays in ALARM' if t - period in in_alarm else 'fires (enters ALARM)'}")
        elif t - period in in_alarm:
            print(f"  {start} ({shown}): back to OK")
print()
print("moto stores alarms but never evaluates them, so none of this happened here.")
print("scripts/alarm-demo.sh runs the same alarms on LocalStack, which evaluates them, and prints the notification.")
EOF
