#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 600) with cargo-fuzz and
# libFuzzer on the nightly toolchain, installing cargo-fuzz when it is missing. Not part of CI: a run of
# all targets takes as long as you give it. Prints one line per target and exits non-zero when one of
# them found a crash (its input is kept under fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh [SECONDS]
set -uo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: the nightly toolchain is needed (rustup toolchain install nightly)" >&2
    exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    CARGO_TARGET_DIR=/var/tmp/sshwatch-tools cargo install --locked --quiet cargo-fuzz >&2 || exit 2
fi

failed=0
for target in $(cargo +nightly fuzz list); do
    mkdir -p "fuzz/corpus/$target"
    start=$(date +%s)
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 >"fuzz/$target.log" 2>&1; then
        runs=$(grep -o 'Done [0-9]* runs' "fuzz/$target.log" | tail -n 1)
        echo "fuzz.sh: $target: no crash in $(( $(date +%s) - start )) s (${runs:-runs unknown})"
    else
        failed=$((failed + 1))
        echo "fuzz.sh: $target: FAILED, see fuzz/$target.log and fuzz/artifacts/$target/"
    fi
done
exit $((failed > 0))
