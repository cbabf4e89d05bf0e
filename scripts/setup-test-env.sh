#!/usr/bin/env bash
# Installs what the test suite needs besides Rust: a git-ignored Python venv
# with moto's server (the local AWS-compatible endpoint). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# moto >= 5.2.6 serves CloudWatch's Smithy RPC v2 CBOR protocol, which the current aws-sdk-cloudwatch speaks;
# the constraints file pins it and its dependencies so that every machine tests against the same server.
constraints=scripts/requirements/moto-constraints.txt
want=$(sed -n 's/^moto==//p' "$constraints")
have=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true)
if [ ! -x .venv/bin/moto_server ] || [ "$have" != "$want" ]; then
    echo "setting up .venv with moto[server] $want (found: ${have:-none})" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -c "$constraints" "moto[server]==$want"
fi

# The journal tests start a private systemd-journald in a mount namespace and
# write into it with logger/systemd-cat; the replay test uses `script` for a pty.
need=""
{ [ -x /lib/systemd/systemd-journald ] && command -v journalctl && command -v systemd-cat; } >/dev/null || need="$need systemd"
{ command -v unshare && command -v nsenter; } >/dev/null || need="$need util-linux"
{ command -v logger && command -v script; } >/dev/null || need="$need bsdutils"
if [ -n "$need" ]; then
    echo "installing:$need" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
