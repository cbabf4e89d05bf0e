#!/usr/bin/env bash
# Installs what scripts/alarm-demo.sh needs besides Rust: a git-ignored Python venv,
# .venv-localstack, with LocalStack's community runtime (localstack-core 2026.3.0,
# which evaluates CloudWatch alarms and runs their SNS actions) and its
# dependencies frozen by scripts/requirements/localstack-constraints.txt. Idempotent.
#
# LocalStack 2026.3.0 needs Python >= 3.12. The interpreter is the newest such
# one among pyenv's versions and python3.NN / python3 on PATH; $LOCALSTACK_PYTHON
# names one explicitly. Without one it prints why and exits 3, so that callers
# can tell "cannot run here" from a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

constraints=scripts/requirements/localstack-constraints.txt
venv=.venv-localstack
want=$(sed -n 's/^localstack-core==//p' "$constraints")
stamp="$venv/.constraints.sha256"
# The pins only: an edit of the header's comments needs no new venv.
sum=$(grep -v '^#' "$constraints" | sha256sum | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] \
    && "$venv/bin/python" -c 'import localstack.runtime.main' 2>/dev/null; then
    exit 0
fi

# Prints "MAJOR.MINOR PATH" for an interpreter that is at least 3.12.
is_recent() {
    "$1" -c 'import sys; assert sys.version_info >= (3, 12); print("%d.%d" % sys.version_info[:2], sys.executable)' 2>/dev/null
}

python=""
if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
    is_recent "$LOCALSTACK_PYTHON" >/dev/null || {
        echo "setup-localstack-env: LOCALSTACK_PYTHON=$LOCALSTACK_PYTHON is not a Python >= 3.12" >&2
        exit 3
    }
    python=$LOCALSTACK_PYTHON
else
    pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
    candidates=("$pyenv_root"/versions/*/bin/python3)
    for minor in 15 14 13 12; do
        p=$(command -v "python3.$minor" 2>/dev/null) && candidates+=("$p")
    done
    p=$(command -v python3 2>/dev/null) && candidates+=("$p")
    best=""
    for c in "${candidates[@]}"; do
        [ -x "$c" ] || continue
        found=$(is_recent "$c") || continue
        # Highest MAJOR.MINOR wins; the first seen wins among equals.
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "${best%% *}" "${found%% *}" | sort -V | tail -1)" != "${best%% *}" ]; then
            best="${found%% *} $c"
        fi
    done
    if [ -z "$best" ]; then
        have=$(python3 --version 2>&1 || echo "no python3")
        echo "setup-localstack-env: no Python >= 3.12 found (pyenv versions under $pyenv_root, python3.NN and python3 on PATH; python3 is: $have)." >&2
        echo "setup-localstack-env: LocalStack $want needs one (its code uses PEP 695 syntax); install one, or name it in LOCALSTACK_PYTHON." >&2
        exit 3
    fi
    python=${best#* }
fi

echo "setting up $venv with localstack-core[runtime] $want on $("$python" --version 2>&1) ($python)" >&2
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" "localstack-core[runtime]==$want"
echo "$sum" >"$stamp"
