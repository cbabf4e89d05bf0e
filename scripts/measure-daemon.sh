#!/usr/bin/env bash
# Measures `sshwatch run` (release build) against a local moto endpoint.
#
#   scripts/measure-daemon.sh [LINES]
#
# The burst (default): LINES (default 1,000,000) real sshd lines appended at once.
#   1. idle RSS once started on an empty log;
#   2. CPU seconds and peak RSS while it ships the lines, until CloudWatch Logs has accepted the last batch
#      (the checkpoint's `shipped` offset reaches the end of the file);
#   3. idle RSS 10 s after that burst (the daemon returns freed memory within one 5-second health tick of
#      going idle);
#   4. latency from appending one line to its acceptance (the checkpoint moving past it, which happens
#      right after PutLogEvents returns), over 20 lines.
# With PROFILE=1 it also samples the daemon with `perf record` during the burst and prints where its CPU
# went (sampling adds a little to the CPU figure).
#
#   scripts/measure-daemon.sh --trickle RATE SECONDS
#
# The trickle: RATE real sshd lines per second (a decimal; 0 measures the idle daemon) for SECONDS, the
# default configuration (flush interval, metrics transport), with scripts/quota-proxy.py counting the calls
# between the daemon and moto. After a 15 s warm-up it prints, over the SECONDS: CPU seconds per minute,
# PutLogEvents and PutMetricData calls per minute, RSS, and the latency from writing a line to
# CloudWatch Logs accepting it (p50, p99), each with its target.
set -euo pipefail
cd "$(dirname "$0")/.."

trickle=""
if [ "${1:-}" = "--trickle" ]; then
    [ $# -eq 3 ] || { echo "usage: scripts/measure-daemon.sh --trickle RATE SECONDS" >&2; exit 2; }
    trickle=1
    rate="$2"
    seconds="$3"
    awk -v r="$rate" -v s="$seconds" 'BEGIN { exit !(r >= 0 && s > 0) }' ||
        { echo "measure-daemon: RATE must be >= 0 and SECONDS > 0" >&2; exit 2; }
else
    lines="${1:-1000000}"
fi
scripts/setup-test-env.sh
cargo build --release --quiet --bin sshwatch
bin="$(realpath "${CARGO_TARGET_DIR:-target}/release/sshwatch")"
py=.venv/bin/python

work="$(mktemp -d)"
moto_pid=""
daemon_pid=""
perf_pid=""
proxy_pid=""
writer_pid=""
cleanup() {
    [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null || true
    [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
    [ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null || true
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
export AWS_ACCESS_KEY_ID=measure AWS_SECRET_ACCESS_KEY=measure AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

ticks="$(getconf CLK_TCK)"
cpu_seconds() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
# The offset after the last line CloudWatch Logs accepted: the newest `shipped` record appended to
# checkpoint.log, else (no such record since the last compaction) the snapshot's, else 0.
shipped_offset() {
    local off
    off="$(grep -F '"record":"shipped"' "$work/state/checkpoint.log" 2>/dev/null |
        sed -n 's/.*"offset": *\([0-9]*\).*/\1/p' | tail -1)"
    [ -n "$off" ] || off="$(sed -n 's/.*"offset": *\([0-9]*\).*/\1/p' "$work/state/checkpoint.json" 2>/dev/null | head -1)"
    echo "${off:-0}"
}

if [ -n "$trickle" ]; then
    # scripts/quota-proxy.py between the daemon and moto, counting calls (no quota) and timing lines.
    proxy_port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$py" scripts/quota-proxy.py --port "$proxy_port" --upstream "$port" --stats "$work/stats.json" \
        2>"$work/proxy.log" &
    proxy_pid=$!
    for _ in $(seq 100); do
        "$py" -c "import socket; socket.create_connection(('127.0.0.1', $proxy_port), 0.2)" 2>/dev/null && break
        sleep 0.1
    done
    # The log group and the stream exist, as on a host where the daemon has run before (the group is
    # `sshwatch bootstrap`'s; the stream is created by the daemon's first batch).
    "$py" - <<'EOF'
import boto3
logs = boto3.client("logs")
logs.create_log_group(logGroupName="secure")
logs.create_log_stream(logGroupName="secure", logStreamName="measure")
EOF
    export AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port"
    # The default configuration, but for the paths and the stream name.
    cat >"$work/sshwatch.toml" <<EOF
[source]
file_path = "$work/secure"
state_dir = "$work/state"
[logs]
log_stream_name = "measure"
EOF
    : >"$work/secure"
    "$bin" run --config "$work/sshwatch.toml" 2>"$work/sshwatch.log" &
    daemon_pid=$!
    # Started once it recorded where it starts in the file (start_position = "end").
    for _ in $(seq 100); do
        [ -s "$work/state/checkpoint.log" ] || [ -s "$work/state/checkpoint.json" ] && break
        kill -0 "$daemon_pid" || { cat "$work/sshwatch.log" >&2; exit 1; }
        sleep 0.1
    done
    if awk -v r="$rate" 'BEGIN { exit !(r > 0) }'; then
        "$py" scripts/line-writer.py "measure=$work/secure=$rate" >"$work/written.json" &
        writer_pid=$!
    else
        # Idle is a host whose log went quiet: one line before the warm-up, none after.
        "$py" scripts/line-writer.py --seconds 0.5 "measure=$work/secure=1" >"$work/written.json"
    fi
    warmup=15
    echo "measure-daemon: trickle of $rate lines/s, ${warmup} s warm-up, then $seconds s measured" >&2
    sleep "$warmup"

    # The window: the proxy's counters start from zero, the daemon's CPU time is read at both ends.
    # Per thread, `TID:ns on CPU` (exact, where utime + stime count 10 ms ticks).
    on_cpu_ns() { for t in /proc/"$1"/task/*; do printf '%s:%s,' "${t##*/}" "$(cut -d' ' -f1 "$t/schedstat")"; done; }
    ticks0="$(awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat")"
    ns0="$(on_cpu_ns "$daemon_pid")"
    kill -USR2 "$proxy_pid"
    t0="$(date +%s.%N)"
    sleep "$seconds"
    ticks1="$(awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat")"
    ns1="$(on_cpu_ns "$daemon_pid")"
    t1="$(date +%s.%N)"
    rss="$(status_kib "$daemon_pid" VmRSS)"
    hwm="$(status_kib "$daemon_pid" VmHWM)"
    kill -USR1 "$proxy_pid"
    for _ in $(seq 100); do [ -s "$work/stats.json" ] && break; sleep 0.05; done
    cp "$work/stats.json" "$work/window.json"

    if [ -n "$writer_pid" ]; then
        kill -TERM "$writer_pid"
        wait "$writer_pid" || true
        writer_pid=""
    fi
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" && status=0 || status=$?
    daemon_pid=""
    [ "$status" -eq 0 ] || { echo "measure-daemon: sshwatch exited with status $status" >&2; cat "$work/sshwatch.log" >&2; }

    "$py" - "$work/window.json" "$rate" "$seconds" "$t0" "$t1" "$ticks0" "$ticks1" "$ticks" "$ns0" "$ns1" \
        "$rss" "$hwm" "$work/sshwatch.log" <<'EOF'
import json, sys
(stats, rate, seconds, t0, t1, ticks0, ticks1, hz, ns0, ns1, rss, hwm, log) = sys.argv[1:]
w = json.load(open(stats))
rate, seconds = float(rate), float(seconds)
elapsed = float(t1) - float(t0)
per_min = 60.0 / elapsed
cpu = (int(ticks1) - int(ticks0)) / int(hz)
# The threads' exact on-CPU time, unless a thread ended in the window (its time is then only in utime + stime).
def threads(arg):
    return {tid: int(ns) for tid, ns in (x.split(":") for x in arg.strip(",").split(","))}
before, after = threads(ns0), threads(ns1)
on_cpu = None
if set(before) <= set(after):
    on_cpu = sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9
ops = w["operations"]
ple = w["put_log_events"]
calls = lambda op: ops.get(op, {}).get("calls", 0)
idle = rate == 0
what = "no line (one line before the warm-up)" if idle else f"{rate:g} lines/s"
print(f"trickle:        {what} for {elapsed:.0f} s after a 15 s warm-up; release build, default configuration "
      f"(force_flush_interval 5 s, metrics transport emf), moto on loopback behind scripts/quota-proxy.py")
target = "idle target: <= 0.01" if idle else "target at 20 lines/s: <= 0.06 (0.1 % of a core)"
best = on_cpu if on_cpu is not None else cpu
print(f"CPU:            {best * per_min:.3f} CPU-s per minute   [{target}]")
how = (f"its threads' on-CPU time (/proc/PID/task/*/schedstat), {on_cpu:.3f} s in {elapsed:.0f} s; " if on_cpu is not None
       else "a thread ended in the window: ")
print(f"                ({how}utime + stime {cpu:.2f} s, in 10 ms ticks)")
lines_calls, emf_calls = ple["lines"]["calls"], ple["emf"]["calls"]
print(f"PutLogEvents:   {calls('PutLogEvents') * per_min:.1f} per minute ({lines_calls * per_min:.1f} with lines, "
      f"the minute's EMF event riding in one of them; {emf_calls * per_min:.1f} with EMF events alone)   "
      f"[target at 20 lines/s: <= 12]")
print(f"PutMetricData:  {calls('PutMetricData') * per_min:.1f} per minute")
if ple["emf"]["ok"]:
    print(f"EMF events:     {w['emf_event_bytes'] / len(w['minutes']):.0f} bytes per minute's event")
other = {op: v["calls"] for op, v in ops.items() if op not in ("PutLogEvents", "PutMetricData")}
if other:
    print("other calls:    " + ", ".join(f"{op} {n}" for op, n in sorted(other.items())))
throttled = sum(v["throttled"] for v in ops.values())
failed = sum(v["failed"] for v in ops.values())
if throttled or failed:
    print(f"not accepted:   {throttled} throttled, {failed} failed")
print(f"RSS:            {int(rss) / 1024:.1f} MiB at the end (peak {int(hwm) / 1024:.1f} MiB, VmHWM since start)")
hist = sorted((int(ms), n) for ms, n in w["latency_ms"].items())
total = sum(n for _, n in hist)
def pct(p):
    want, seen = p * total, 0
    for ms, n in hist:
        seen += n
        if seen >= want:
            return ms / 1000
if total:
    print(f"latency:        p50 {pct(0.5):.2f} s, p99 {pct(0.99):.2f} s, max {hist[-1][0] / 1000:.2f} s over {total} lines, "
          f"written -> PutLogEvents accepted   [target: p50 <= 5 s, the flush interval]")
else:
    print("latency:        no line shipped in the window")
warn = sum(1 for l in open(log, errors="replace") if " WARN " in l)
error = sum(1 for l in open(log, errors="replace") if " ERROR " in l)
if warn or error:
    print(f"daemon log:     {warn} WARN, {error} ERROR lines")
EOF
    exit 0
fi

# The input: real sshd lines (every fixture in the traditional format) in turn, numbered.
cat tests/fixtures/sshd/*-traditional.auth.log | grep . >"$work/base"
awk -v n="$lines" '{ base[NR] = $0 } END { for (i = 0; i < n; i++) print base[i % NR + 1] " seq=" i }' \
    "$work/base" >"$work/input"
size="$(stat -c %s "$work/input")"
: >"$work/secure"

cat >"$work/sshwatch.toml" <<EOF
[source]
file_path = "$work/secure"
state_dir = "$work/state"
start_position = "beginning"
[logs]
log_stream_name = "measure"
EOF

"$bin" run --config "$work/sshwatch.toml" 2>"$work/sshwatch.log" &
daemon_pid=$!
sleep 3
idle_start="$(status_kib "$daemon_pid" VmRSS)"
cpu_start="$(cpu_seconds "$daemon_pid")"

if [ -n "${PROFILE:-}" ]; then
    perf record -F 999 -p "$daemon_pid" -o "$work/perf.data" 2>"$work/perf.log" &
    perf_pid=$!
    sleep 1
fi
start=$(date +%s.%N)
cat "$work/input" >>"$work/secure"
while [ "$(shipped_offset)" != "$size" ]; do
    kill -0 "$daemon_pid" || { cat "$work/sshwatch.log" >&2; exit 1; }
    sleep 0.05
done
end=$(date +%s.%N)
burst_cpu="$(awk -v a="$cpu_start" -v b="$(cpu_seconds "$daemon_pid")" 'BEGIN { printf "%.2f", b - a }')"
burst_hwm="$(status_kib "$daemon_pid" VmHWM)"
if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf_pid=""
fi

sleep 10
idle_rss="$(status_kib "$daemon_pid" VmRSS)"

# Latency: append one line, wait for the checkpoint to move past it.
lat="$work/latency"
: >"$lat"
for i in $(seq 20); do
    before="$(stat -c %s "$work/secure")"
    line="$(sed -n "$((i + 1))p" "$work/base") latency=$i"
    t0=$(date +%s%N)
    printf '%s\n' "$line" >>"$work/secure"
    want=$((before + ${#line} + 1))
    while [ "$(shipped_offset)" -lt "$want" ]; do sleep 0.002; done
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000)) >>"$lat"
    sleep 0.2
done

kill -TERM "$daemon_pid"
wait "$daemon_pid" || true
daemon_pid=""

sort -n "$lat" -o "$lat"
printf 'input:            %s lines, %s bytes of sshd lines, shipped to moto on loopback\n' "$lines" "$size"
printf 'wall time:        %.1f s until the last batch was accepted (moto is the bottleneck)\n' "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
printf 'CPU:              %s s (user + system) for the burst\n' "$burst_cpu"
printf 'peak RSS:         %.1f MiB during the burst (VmHWM)\n' "$(awk -v k="$burst_hwm" 'BEGIN { print k / 1024 }')"
printf 'idle RSS:         %.1f MiB at start (empty log)\n' "$(awk -v k="$idle_start" 'BEGIN { print k / 1024 }')"
printf 'idle RSS:         %.1f MiB, 10 s after the burst\n' "$(awk -v k="$idle_rss" 'BEGIN { print k / 1024 }')"
printf 'append→accepted:  median %s ms, max %s ms (20 single lines)\n' "$(sed -n 10p "$lat")" "$(tail -1 "$lat")"
if [ -n "${PROFILE:-}" ]; then
    echo
    echo "where the burst's CPU went (perf record), by binary:"
    perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep '%'
    echo "and by symbol (those of at least 1 %):"
    perf report -i "$work/perf.data" --no-children --sort dso,symbol --percent-limit 1 --stdio 2>/dev/null |
        grep '%' | cut -c1-110
fi
