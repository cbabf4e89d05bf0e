#!/usr/bin/env bash
# Builds the .deb (cargo-deb) and the .rpm (cargo-generate-rpm): release binary, then the man pages and
# shell completions from the clap definitions into target/assets/, then both packages.
# Installs cargo-deb and cargo-generate-rpm (pinned, `cargo install --locked`) when they are missing.
# Progress goes to stderr; stdout gets the two package paths, the .deb first, one per line.
#
#   scripts/package.sh              # cargo build --release, then package
#   scripts/package.sh --no-build   # package the release binary already built
set -euo pipefail
cd "$(dirname "$0")/.."

build=yes
case "${1:-}" in
"") ;;
--no-build) build=no ;;
*)
    echo "usage: scripts/package.sh [--no-build]" >&2
    exit 2
    ;;
esac

# The versions this packaging metadata was written and tested against.
CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1

target_dir="${CARGO_TARGET_DIR:-target}"
assets=target/assets

say() { echo "package.sh: $*" >&2; }

# Installs crate $2 at version $3 unless `cargo $1` already runs. The tools get their own target dir so
# that building them does not lock (or bloat) the project's.
ensure_tool() {
    if ! cargo "$1" --version >/dev/null 2>&1; then
        say "installing $2 $3"
        CARGO_TARGET_DIR=/var/tmp/sshwatch-tools cargo install --locked --quiet "$2" --version "=$3" >&2
    fi
}
ensure_tool deb cargo-deb "$CARGO_DEB_VERSION"
ensure_tool generate-rpm cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"

bin="$target_dir/release/sshwatch"
if [ $build = yes ]; then
    say "building the release binary"
    cargo build --release --bin sshwatch >&2
elif [ ! -x "$bin" ]; then
    say "--no-build: $bin does not exist"
    exit 1
fi

say "generating the man pages and completions into $assets"
rm -rf "$assets"
"$bin" generate-assets "$assets" >&2
gzip -9n "$assets"/*.1
# The docs that exist (the package metadata takes all of target/assets/doc/).
mkdir "$assets/doc"
for doc in README.md ARCHITECTURE.md CHANGELOG.md LICENSE* docs/*.md; do
    if [ -f "$doc" ]; then cp "$doc" "$assets/doc/"; fi
done
if [ -z "$(ls -A "$assets/doc")" ]; then
    say "no documentation found (README.md, docs/*.md)"
    exit 1
fi
# cargo-generate-rpm packages binaries as they are; cargo-deb strips its own copy (--strip).
strip --strip-all -o "$assets/sshwatch" "$bin"

say "building the .deb"
mkdir -p "$target_dir/debian"
deb=$(cargo deb --no-build --strip --output "$target_dir/debian/" | tail -n 1)

say "building the .rpm"
rm -rf "$target_dir/generate-rpm"
mkdir -p "$target_dir/generate-rpm"
cargo generate-rpm --output "$target_dir/generate-rpm/" >&2
rpm=$(ls "$target_dir"/generate-rpm/*.rpm)

for p in "$deb" "$rpm"; do
    [ -f "$p" ] || { say "expected package not found: $p"; exit 1; }
done
realpath "$deb" "$rpm"
