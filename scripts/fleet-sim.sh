#!/usr/bin/env bash
# A scaled fleet on one machine: HOSTS real `sshwatch run` daemons (release build, default configuration
# but for each one's log file, state directory and stream name) ship to a local moto endpoint through
# scripts/quota-proxy.py, which enforces the per-account, per-Region quotas scaled by HOSTS / 10,000
# (PutLogEvents 5,000/s, PutMetricData 500/s, PutMetricAlarm 3/s: a token bucket per operation answering
# the service's own throttling error beyond it). One writer (scripts/line-writer.py) appends real, numbered
# sshd lines to every host's log, each host at its own steady rate, spread evenly from 1 to 50 lines/s.
#
#   scripts/fleet-sim.sh [HOSTS] [MINUTES]        (default: 200 hosts, 3 minutes measured)
#
# The hosts start writing one after another over START_SPREAD_SECONDS (default 10), so that their batches
# take the spread phases of a fleet that has been running; START_SPREAD_SECONDS=0 starts them all in the
# same second, as a fleet-wide restart does. After a warm-up (WARMUP_SECONDS, default 100: past every
# host's first published minute) it measures for MINUTES, then stops the writer and,
# one after another over 5 s, every daemon with SIGTERM (which ships the last batch and publishes the open
# minute), and reads CloudWatch Logs back. It prints per operation the calls per second against the scaled
# quota and the share throttled; the lines lost (every host's log against its stream, line by line) and,
# from the per-minute heartbeat, the lines counted; the latency from writing a line to CloudWatch Logs
# accepting it; when each host's minute arrived; CPU seconds per host-hour and RSS per daemon.
#
# METRICS_TRANSPORT=put_metric_data runs the fleet with `[metrics] transport = "put_metric_data"` instead
# of the default (embedded metric format events). KEEP=1 keeps the working directory. Run as root, each
# daemon gets its own user id (setpriv), so that HOSTS daemons fit in the per-user inotify instance limit.
set -euo pipefail
cd "$(dirname "$0")/.."

hosts="${1:-200}"
minutes="${2:-3}"
transport="${METRICS_TRANSPORT:-emf}"
warmup="${WARMUP_SECONDS:-100}"
start_spread="${START_SPREAD_SECONDS:-10}"
case "$hosts$minutes" in *[!0-9.]*) echo "usage: scripts/fleet-sim.sh [HOSTS] [MINUTES]" >&2; exit 2 ;; esac
[ "$hosts" -ge 1 ] || { echo "fleet-sim: HOSTS must be at least 1" >&2; exit 2; }
case "$transport" in emf | put_metric_data) ;; *) echo "fleet-sim: METRICS_TRANSPORT is emf or put_metric_data" >&2; exit 2 ;; esac

scripts/setup-test-env.sh
echo "fleet-sim: building sshwatch (release)" >&2
cargo build --release --quiet --bin sshwatch
bin="$(realpath "${CARGO_TARGET_DIR:-target}/release/sshwatch")"
py="$(realpath .venv/bin/python)"

# Each daemon under its own user id when root (the inotify instance limit is per user); else all as this
# user, which needs fs.inotify.max_user_instances above HOSTS.
per_user=""
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    per_user=1
elif [ "$(cat /proc/sys/fs/inotify/max_user_instances)" -le "$hosts" ]; then
    echo "fleet-sim: $hosts daemons need more inotify instances than fs.inotify.max_user_instances allows;" \
        "run as root (one user id per daemon) or raise it" >&2
    exit 1
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work="$(mktemp -d)"
chmod 0755 "$work"
moto_pid=""
proxy_pid=""
writer_pid=""
daemon_pids=()
cleanup() {
    [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
    for pid in "${daemon_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    # The proxy writes its counters when it ends: let it finish before its directory goes.
    wait 2>/dev/null
    if [ -n "${KEEP:-}" ]; then echo "fleet-sim: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 200); do
        "$py" -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "fleet-sim: nothing listens on port $1" >&2
    return 1
}

moto_port="$(free_port)"
.venv/bin/moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
wait_port "$moto_port"

# The account's quotas per Region, scaled to the simulated fleet.
scale="$(awk -v h="$hosts" 'BEGIN { printf "%.6f", h / 10000 }')"
q_ple="$(awk -v s="$scale" 'BEGIN { printf "%.4f", 5000 * s }')"
q_pmd="$(awk -v s="$scale" 'BEGIN { printf "%.4f", 500 * s }')"
q_pma="$(awk -v s="$scale" 'BEGIN { printf "%.4f", 3 * s }')"
proxy_port="$(free_port)"
"$py" scripts/quota-proxy.py --port "$proxy_port" --upstream "$moto_port" --stats "$work/stats.json" \
    --quota "PutLogEvents=$q_ple" --quota "PutMetricData=$q_pmd" --quota "PutMetricAlarm=$q_pma" \
    2>"$work/proxy.log" &
proxy_pid=$!
wait_port "$proxy_port"

export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=fleet AWS_SECRET_ACCESS_KEY=fleet AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

# The log group, as `sshwatch bootstrap` creates it once for the account (straight to moto: not counted).
AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" "$py" -c \
    'import boto3; boto3.client("logs").create_log_group(logGroupName="secure")'

# The hosts: a directory each with its log, state directory and configuration; rates 1..50 lines/s.
width=$((${#hosts} > 3 ? ${#hosts} : 3))
: >"$work/hosts.tsv"
targets=()
for ((i = 0; i < hosts; i++)); do
    name="$(printf "host-%0${width}d" "$i")"
    dir="$work/hosts/$name"
    mkdir -p "$dir"
    rate=$((hosts > 1 ? 1 + 49 * i / (hosts - 1) : 20))
    : >"$dir/secure"
    {
        echo "[source]"
        echo "file_path = \"$dir/secure\""
        echo "state_dir = \"$dir/state\""
        echo "[logs]"
        echo "log_stream_name = \"$name\""
        if [ "$transport" != emf ]; then
            echo "[metrics]"
            echo "transport = \"$transport\""
        fi
    } >"$dir/sshwatch.toml"
    uid=$((20000 + i))
    [ -n "$per_user" ] && chown "$uid:$uid" "$dir"
    printf '%s\t%s\t%s\t%s\n' "$name" "$dir" "$rate" "$uid" >>"$work/hosts.tsv"
    targets+=("$name=$dir/secure=$rate")
done

echo "fleet-sim: starting $hosts daemons" >&2
export AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port"
while IFS=$'\t' read -r name dir rate uid; do
    if [ -n "$per_user" ]; then
        setpriv --reuid="$uid" --regid="$uid" --clear-groups -- \
            "$bin" run --config "$dir/sshwatch.toml" 2>"$dir/sshwatch.log" &
    else
        "$bin" run --config "$dir/sshwatch.toml" 2>"$dir/sshwatch.log" &
    fi
    daemon_pids+=($!)
    printf '%s\n' "$!" >"$dir/pid"
    sleep 0.02
done <"$work/hosts.tsv"

# Started once each recorded where it starts in its file (start_position = "end").
for _ in $(seq 600); do
    missing=0
    while IFS=$'\t' read -r name dir rate uid; do
        [ -s "$dir/state/checkpoint.log" ] || [ -s "$dir/state/checkpoint.json" ] || missing=$((missing + 1))
    done <"$work/hosts.tsv"
    [ "$missing" -eq 0 ] && break
    sleep 0.1
done
for pid in "${daemon_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "fleet-sim: a daemon ended at start-up (pid $pid)" >&2; exit 1; }
done
[ "$missing" -eq 0 ] || { echo "fleet-sim: $missing daemons did not start" >&2; exit 1; }

"$py" scripts/line-writer.py --start-spread "$start_spread" "${targets[@]}" >"$work/written.json" 2>"$work/writer.log" &
writer_pid=$!
total_rate="$(awk -F'\t' '{ n += $3 } END { print n }' "$work/hosts.tsv")"
echo "fleet-sim: writing $total_rate lines/s in all (the hosts starting over $start_spread s);" \
    "${warmup} s warm-up, then $minutes min measured" >&2
sleep "$warmup"

# The measured window: the proxy's counters from zero, every daemon's CPU time at both ends.
# Each daemon's threads' on-CPU time in nanoseconds (schedstat): utime + stime count 10 ms ticks, too
# coarse for a daemon that spends a few milliseconds a minute.
cpu_ns() {
    for pid in "${daemon_pids[@]}"; do
        cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%d\n", s }'
    done
}
cpu_ns >"$work/cpu0"
kill -USR2 "$proxy_pid"
t0="$(date +%s.%N)"
window="$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')"
left="$window"
while [ "$left" -gt 0 ]; do
    step=$((left > 60 ? 60 : left))
    sleep "$step"
    left=$((left - step))
    [ "$left" -gt 0 ] && echo "fleet-sim: $left s left" >&2
done
cpu_ns >"$work/cpu1"
t1="$(date +%s.%N)"
for pid in "${daemon_pids[@]}"; do
    awk '$1 == "VmRSS:" { r = $2 } $1 == "VmHWM:" { h = $2 } END { print r "\t" h }' "/proc/$pid/status"
done >"$work/rss"
loadavg="$(cut -d' ' -f1-3 /proc/loadavg)"
kill -USR1 "$proxy_pid"
for _ in $(seq 200); do [ -s "$work/stats.json" ] && break; sleep 0.05; done
mv "$work/stats.json" "$work/window.json"

# Stop: the writer, then (once the daemons read the last lines) every daemon, as a fleet stops.
kill -TERM "$writer_pid"
wait "$writer_pid" || true
writer_pid=""
sleep 3
echo "fleet-sim: stopping the daemons (SIGTERM) and reading CloudWatch Logs back" >&2
pause="$(awk -v h="$hosts" 'BEGIN { printf "%.3f", 5 / h }')"
for pid in "${daemon_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    sleep "$pause"
done
: >"$work/exits"
for pid in "${daemon_pids[@]}"; do
    wait "$pid" && echo 0 >>"$work/exits" || echo $? >>"$work/exits"
done
daemon_pids=()
kill -USR1 "$proxy_pid"
for _ in $(seq 200); do [ -s "$work/stats.json" ] && break; sleep 0.05; done
mv "$work/stats.json" "$work/final.json"

"$py" - "$work" "$hosts" "$minutes" "$transport" "$warmup" "$t0" "$t1" "$moto_port" \
    "$loadavg" "$start_spread" <<'EOF'
import json, os, re, statistics, sys
import boto3

work, hosts, minutes, transport, warmup, t0, t1, moto_port, loadavg, start_spread = sys.argv[1:]
hosts = int(hosts)
elapsed = float(t1) - float(t0)
w = json.load(open(f"{work}/window.json"))
written = json.load(open(f"{work}/written.json"))
table = [line.rstrip("\n").split("\t") for line in open(f"{work}/hosts.tsv")]
names = [t[0] for t in table]
rates = {t[0]: int(t[2]) for t in table}
cpu0 = [int(x) for x in open(f"{work}/cpu0")]
cpu1 = [int(x) for x in open(f"{work}/cpu1")]
rss = [tuple(int(v) for v in l.split("\t")) for l in open(f"{work}/rss")]
exits = [int(x) for x in open(f"{work}/exits")]

def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")

def pct_hist(hist, p):
    total = sum(hist.values())
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= p * total:
            return ms
    return float("nan")

total_rate = sum(rates.values())
print(f"fleet-sim: {hosts} sshwatch daemons (release build, default configuration, metrics transport {transport}) "
      f"on loopback, moto behind scripts/quota-proxy.py")
print(f"  each fed real sshd lines at its own rate, 1 to 50 lines/s ({total_rate} lines/s in all, "
      f"mean {total_rate / hosts:.1f} per host), starting over {start_spread} s; {elapsed:.0f} s measured after a {warmup} s warm-up; "
      f"load average at the end {loadavg}")
scale = hosts / 10000
print(f"  quotas scaled by {hosts}/10,000: PutLogEvents {5000 * scale:g}/s, PutMetricData {500 * scale:g}/s, "
      f"PutMetricAlarm {3 * scale:g}/s (token bucket, 1 s of burst)")
print()

# Calls per operation against the scaled quota.
print("calls per operation in the window              [target: within the scaled quota, no throttling]")
print(f"  {'operation':<17}{'calls/s':>9}{'busiest s':>11}{'quota/s':>10}{'of quota':>10}{'throttled':>11}{'per host-min':>14}")
ops = w["operations"]
for op in sorted(ops, key=lambda o: -ops[o]["calls"]):
    v = ops[op]
    rate = v["calls"] / elapsed
    busiest = max(v["per_second"].values(), default=0)
    quota = w["quotas"].get(op)
    share = v["throttled"] / v["calls"] if v["calls"] else 0
    q = f"{quota:g}" if quota else "-"
    of = f"{100 * rate / quota:.0f} %" if quota else "-"
    print(f"  {op:<17}{rate:>9.2f}{busiest:>11}{q:>10}{of:>10}{100 * share:>10.2f}%"
          f"{v['calls'] / hosts / (elapsed / 60):>14.2f}")
for op in ("PutLogEvents", "PutMetricData"):
    if op not in ops:
        print(f"  {op:<17}{0:>9.2f}{0:>11}{w['quotas'].get(op, 0):>10g}{'0 %':>10}{'-':>11}{0:>14.2f}")
ple = w["put_log_events"]
per_s = sorted(ops.get("PutLogEvents", {}).get("per_second", {}).values())
if per_s:
    print(f"  PutLogEvents per second: median {pct(per_s, 0.5)}, p99 {pct(per_s, 0.99)}, max {per_s[-1]}")
print(f"  PutLogEvents: {ple['lines']['calls'] / hosts / (elapsed / 60):.2f} calls per host-minute with lines, "
      f"{ple['emf']['calls'] / hosts / (elapsed / 60):.2f} with the minute's EMF event")
print()

# Lines: every host's log against its stream in CloudWatch Logs, line by line.
logs = boto3.client("logs", endpoint_url=f"http://127.0.0.1:{moto_port}")
def events(stream):
    out, token = [], None
    while True:
        kw = {"logGroupName": "secure", "logStreamName": stream, "startFromHead": True}
        if token:
            kw["nextToken"] = token
        try:
            page = logs.get_log_events(**kw)
        except logs.exceptions.ResourceNotFoundException:
            return out
        out += page["events"]
        if page["nextForwardToken"] == token or not page["events"]:
            return out
        token = page["nextForwardToken"]

seq_re = re.compile(r" seq=(\d+) t=\d+$")

def shipped_offset(state):
    """The offset after the last line CloudWatch Logs accepted, from the daemon's checkpoint."""
    off = None
    try:
        for line in open(f"{state}/checkpoint.log"):
            m = re.search(r'"offset":\s*(\d+)', line)
            if '"record":"shipped"' in line and m:
                off = int(m.group(1))
    except FileNotFoundError:
        pass
    if off is None:
        try:
            m = re.search(r'"offset":\s*(\d+)', open(f"{state}/checkpoint.json").read())
            off = int(m.group(1)) if m else 0
        except FileNotFoundError:
            off = 0
    return off

total_written = total_stored = total_lost = total_pending = total_dup = total_changed = 0
counted_ok = counted_checked = counted_later = 0
failures = []
for name in names:
    path = f"{work}/hosts/{name}/secure"
    lines, ends, end = [], [], 0
    with open(path, "rb") as f:
        for raw in f:
            end += len(raw)
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
            ends.append(end)
    shipped = shipped_offset(f"{work}/hosts/{name}/state")
    stream = events(name)
    # The minutes' EMF events ride in the lines' stream.
    emf = [e for e in stream if e["message"].startswith("{") and '"_aws"' in e["message"]]
    stored = [e for e in stream if not (e["message"].startswith("{") and '"_aws"' in e["message"])]
    got = {}
    dup = changed = 0
    for e in stored:
        m = seq_re.search(e["message"])
        if not m:
            changed += 1
            continue
        n = int(m.group(1))
        if n in got:
            dup += 1
        got[n] = e["message"]
        if n >= len(lines) or lines[n] != e["message"]:
            changed += 1
    missing = [n for n in range(len(lines)) if n not in got]
    # A line missing from the stream is lost if the checkpoint says CloudWatch accepted it; otherwise it
    # waits in the file for the next start.
    lost = sum(1 for n in missing if ends[n] <= shipped)
    pending = len(missing) - lost
    total_written += len(lines)
    total_stored += len(stored)
    total_lost += lost
    total_pending += pending
    total_dup += dup
    total_changed += changed
    if written.get(name) != len(lines):
        failures.append(f"{name}: the writer wrote {written.get(name)} lines, the file holds {len(lines)}")
    if lost or dup or changed:
        failures.append(f"{name}: {len(lines)} written, {len(stored)} stored, {lost} lost, {dup} duplicated, {changed} altered")
    if pending:
        failures.append(f"{name}: {pending} lines not shipped at the stop (after the checkpoint, sent after the next start)")
    if transport == "emf":
        read = 0
        for e in emf:
            doc = json.loads(e["message"])
            read += doc.get("LinesRead", 0)
        counted_checked += 1
        log = open(f"{work}/hosts/{name}/sshwatch.log", errors="replace").read()
        if read == len(lines):
            counted_ok += 1
        elif "gave up publishing at shutdown" in log:
            counted_later += 1
            failures.append(f"{name}: the heartbeat LinesRead sums to {read:g} of {len(lines)} lines; the rest was "
                            "not published at the stop (kept in the checkpoint for the next start)")
        else:
            failures.append(f"{name}: the heartbeat LinesRead sums to {read:g}, {len(lines)} lines written")

print(f"lines: {total_written} written, {total_stored} in CloudWatch Logs; lost {total_lost} [target: 0], "
      f"duplicated {total_dup}, altered {total_changed}, not shipped at the stop {total_pending}")
if counted_checked:
    print(f"  per-minute counts: the heartbeat (LinesRead) summed over every published minute equals the lines written "
          f"on {counted_ok} of {counted_checked} hosts" + (f" ({counted_later} more publish the rest after their next start)"
                                                           if counted_later else ""))
bad_exits = [x for x in exits if x != 0]
print(f"  SIGTERM: {len(exits) - len(bad_exits)} of {len(exits)} daemons exited 0")
for f in failures[:20]:
    print(f"  {f}")
if len(failures) > 20:
    print(f"  ... and {len(failures) - 20} more")
print()

# Latency and minute arrivals (the proxy's records).
hist = {int(ms): n for ms, n in w["latency_ms"].items()}
n = sum(hist.values())
if n:
    print(f"latency, line written -> PutLogEvents accepted: p50 {pct_hist(hist, 0.5) / 1000:.2f} s, "
          f"p99 {pct_hist(hist, 0.99) / 1000:.2f} s, max {max(hist) / 1000:.2f} s over {n} lines "
          f"[target: p50 <= force_flush_interval, 5 s]")
mins = w["minutes"]
if mins:
    offsets = [m["accepted_ms"] / 1000 - (m["minute"] + 60) for m in mins]
    by_second = {}
    for m in mins:
        s = m["accepted_ms"] // 1000
        by_second[s] = by_second.get(s, 0) + 1
    per_minute = len(mins) / (elapsed / 60)
    print(f"minute arrivals ({len(mins)} minutes accepted, {'EMF events' if transport == 'emf' else 'PutMetricData calls'}), "
          f"seconds after the minute ended: min {min(offsets):.1f}, p50 {pct(offsets, 0.5):.1f}, p99 {pct(offsets, 0.99):.1f}, "
          f"max {max(offsets):.1f}   [by design: in [grace 5, 5 + spread 30) s"
          + (", plus up to the flush interval (5 s) waiting for a batch to ride in]" if transport == "emf" else "]"))
    bins = {}
    for o in offsets:
        b = int(o // 5) * 5
        bins[b] = bins.get(b, 0) + 1
    print("  per 5 s after the minute's end: " + ", ".join(f"{b}-{b + 5} s: {bins[b]}" for b in sorted(bins)))
    print(f"  busiest second: {max(by_second.values())} minutes; {per_minute:.0f} a minute in all, so "
          f"{per_minute / 30:.1f} a second over the 30 s spread (without it, all {hosts} in about one second)")
    if transport == "emf":
        print(f"  an EMF minute event is {w['emf_event_bytes'] / len(mins):.0f} bytes on average")
        streams = {m["stream"] for m in mins}
        offs = {}
        for m in mins:
            offs.setdefault(m["stream"], []).append(round(m["accepted_ms"] / 1000 - m["minute"] - 60))
        distinct = {round(statistics.median(v)) for v in offs.values()}
        print(f"  {len(streams)} hosts published; their publish offsets take {len(distinct)} distinct seconds")
print()

# Cost on the host.
cpu = [(b - a) / 1e9 for a, b in zip(cpu0, cpu1)]
per_hour = [c * 3600 / elapsed for c in cpu]
print(f"CPU: {statistics.mean(per_hour):.2f} CPU-s per host-hour on average ({100 * statistics.mean(per_hour) / 3600:.3f} % of a core; "
      f"min {min(per_hour):.2f}, median {statistics.median(per_hour):.2f}, max {max(per_hour):.2f})")
xs = [rates[nm] for nm in names]
if len(set(xs)) > 1:
    mx, my = statistics.mean(xs), statistics.mean(per_hour)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, per_hour)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    print(f"  least squares over the hosts: {a:.2f} + {b:.3f} x (lines/s) CPU-s per host-hour; at 20 lines/s "
          f"{a + 20 * b:.2f} CPU-s per hour = {(a + 20 * b) / 60:.3f} CPU-s per minute [trickle target: <= 0.06 per minute]")
print(f"  the whole fleet: {sum(cpu) / elapsed:.2f} cores ({sum(cpu):.1f} CPU-s in {elapsed:.0f} s)")
r = [x[0] / 1024 for x in rss]
h = [x[1] / 1024 for x in rss]
print(f"RSS per daemon: mean {statistics.mean(r):.1f} MiB, max {max(r):.1f} MiB at the end of the window; "
      f"peak (VmHWM) max {max(h):.1f} MiB   [target: <= 15 MiB idle, <= 64 MiB peak]")

# What the daemons logged.
warn = err = throttled_hosts = 0
for name in names:
    text = open(f"{work}/hosts/{name}/sshwatch.log", errors="replace").read()
    warn += text.count(" WARN ")
    err += text.count(" ERROR ")
    if "throttling" in text:
        throttled_hosts += 1
print(f"daemon logs: {warn} WARN and {err} ERROR lines; {throttled_hosts} daemons logged throttling")
EOF
