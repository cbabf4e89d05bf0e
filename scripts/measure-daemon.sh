#!/usr/bin/env bash
# Measures `sshwatch run` (release build) against a local moto endpoint:
#   1. idle RSS once started on an empty log;
#   2. CPU seconds and peak RSS while it ships 1,000,000 real sshd lines
#      appended at once, until CloudWatch Logs has accepted the last batch (the
#      checkpoint's `shipped` offset reaches the end of the file);
#   3. idle RSS 10 s after that burst (the daemon returns freed memory within one
#      5-second health tick of going idle);
#   4. latency from appending one line to its acceptance (the checkpoint moving
#      past it, which happens right after PutLogEvents returns), over 20 lines.
#
#   scripts/measure-daemon.sh [LINES]
#
# With PROFILE=1 it also samples the daemon with `perf record` during the burst
# and prints where its CPU went (sampling adds a little to the CPU figure).
set -euo pipefail
cd "$(dirname "$0")/.."

lines="${1:-1000000}"
scripts/setup-test-env.sh
cargo build --release --quiet --bin sshwatch
bin="$(realpath "${CARGO_TARGET_DIR:-target}/release/sshwatch")"
py=.venv/bin/python

work="$(mktemp -d)"
moto_pid=""
daemon_pid=""
perf_pid=""
cleanup() {
    [ -n "$perf_pid" ] && kill -INT "$perf_pid" 2>/dev/null || true
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
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=measure AWS_SECRET_ACCESS_KEY=measure AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

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

ticks="$(getconf CLK_TCK)"
cpu_seconds() { awk -v t="$ticks" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
shipped_offset() { sed -n 's/.*"offset": \([0-9]*\).*/\1/p' "$work/state/checkpoint.json" 2>/dev/null | head -1; }

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
