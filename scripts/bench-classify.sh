#!/usr/bin/env bash
# Measures `sshwatch classify` with the default (seed) filters on a large real
# sshd log against `wc -l` and `grep -c "Invalid user"` on the same file, and
# prints the wall-time ratios and lines per second.
#
#   scripts/bench-classify.sh [SIZE_MB] [SOURCE_LOG...]
#
# The log is built by repeating real sshd lines (default: the traditional-format
# fixtures in tests/fixtures/sshd/) up to SIZE_MB (default 1024), in /var/tmp.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mb="${1:-1024}"
shift || true
sources=("$@")
if [ ${#sources[@]} -eq 0 ]; then
    sources=(tests/fixtures/sshd/*-traditional.auth.log)
fi

cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/sshwatch"
log="/var/tmp/sshwatch-bench-${size_mb}m.log"

if [ ! -f "$log" ] || [ "$(stat -c %s "$log")" -lt $((size_mb * 1024 * 1024)) ]; then
    seed=$(mktemp)
    cat "${sources[@]}" > "$seed"
    : > "$log"
    target=$((size_mb * 1024 * 1024))
    chunk=$(mktemp)
    while [ "$(stat -c %s "$chunk")" -lt $((8 * 1024 * 1024)) ]; do cat "$seed" >> "$chunk"; done
    while [ "$(stat -c %s "$log")" -lt "$target" ]; do cat "$chunk" >> "$log"; done
    rm -f "$seed" "$chunk"
fi

# Warm the page cache so every tool reads from memory.
cat "$log" > /dev/null

out=$(mktemp)
trap 'rm -f "$out"' EXIT
best() { # best wall time of 3 runs, in seconds
    # Output goes to a file, not /dev/null: GNU grep stops at the first match
    # when it sees its output is /dev/null.
    local t best=""
    for _ in 1 2 3; do
        t=$( { /usr/bin/time -f %e "$@" > "$out"; } 2>&1 | tail -1 )
        if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    done
    echo "$best"
}

lines=$(wc -l < "$log")
bytes=$(stat -c %s "$log")
t_wc=$(best wc -l "$log")
t_grep=$(best grep -c "Invalid user" "$log")
t_cls=$(best "$bin" classify "$log")

echo "file:      $log ($bytes bytes, $lines lines)"
echo "result:    $("$bin" classify "$log")"
awk -v b="$bytes" -v l="$lines" -v wc="$t_wc" -v gr="$t_grep" -v cl="$t_cls" 'BEGIN {
    printf "wc -l:     %.2f s\n", wc
    printf "grep -c:   %.2f s  (%.1fx wc -l)\n", gr, gr / wc
    printf "classify:  %.2f s  (%.1fx wc -l, %.2f GB/s, %.1f M lines/s)\n", cl, cl / wc, b / cl / 1e9, l / cl / 1e6
}'
