#!/usr/bin/env bash
# Installs the packages on this Debian machine and checks them: files, conffile, user,
# enable symlink, the .rpm's contents and scriptlets, `systemd-analyze verify` and `security`, the daemon as
# the `sshwatch` user with only CAP_DAC_READ_SEARCH reading a root-owned 0600 log into a local moto server,
# then remove and purge. Runs as root; no running systemd is needed (CI has none).
#
#   scripts/package-test.sh              # builds both packages with scripts/package.sh first
#   scripts/package-test.sh DEB RPM      # tests packages built earlier
#
# Prints one PASS/FAIL line per check and exits non-zero if any failed.
# It installs the package on this machine (purging an installed `sshwatch` first) and purges it at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "package-test.sh: must run as root (it installs the package)" >&2
    exit 2
fi

failures=0
checks=0
pass() { checks=$((checks + 1)); echo "PASS: $*"; }
fail() { checks=$((checks + 1)); failures=$((failures + 1)); echo "FAIL: $*"; }
# check DESCRIPTION COMMAND...: PASS when the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
note() { echo "      $*"; }

tmp=$(mktemp -d /var/tmp/sshwatch-package-test.XXXXXX)
chmod 0755 "$tmp"
moto_pid=
daemon_pid=
notify_pid=
cleanup() {
    for pid in $daemon_pid $notify_pid $moto_pid; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- Tools -------------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
# rpm for `rpm -qp`; man-db because `systemd-analyze verify` checks the unit's Documentation=man: page.
missing_tools=
command -v rpm >/dev/null || missing_tools+=" rpm"
command -v man >/dev/null || missing_tools+=" man-db"
if [ -n "$missing_tools" ]; then
    echo "installing$missing_tools (Debian's packages)" >&2
    { apt-get update -qq && apt-get install -y -qq $missing_tools; } >&2 || {
        echo "FAIL: cannot install$missing_tools" >&2
        exit 1
    }
fi

# --- Build -------------------------------------------------------------------------------------------
if [ $# -eq 2 ]; then
    deb=$(realpath "$1")
    rpmfile=$(realpath "$2")
else
    mapfile -t pkgs < <(scripts/package.sh)
    deb=${pkgs[0]:-}
    rpmfile=${pkgs[1]:-}
fi
if [ -f "$deb" ] && [ -f "$rpmfile" ]; then
    pass "packages built: $(basename "$deb"), $(basename "$rpmfile")"
else
    fail "packages built (deb='$deb' rpm='$rpmfile')"
    exit 1
fi

# The files both packages must carry, with the .deb's paths. The .rpm's differ only in the unit directory
# (/usr/lib/systemd/system) and zsh's (site-functions).
man_pages=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep '^/usr/share/man/man1/.*\.1\.gz$' | sort)
expected_deb_files="/usr/bin/sshwatch
/lib/systemd/system/sshwatch.service
/etc/sshwatch/sshwatch.toml
/usr/share/bash-completion/completions/sshwatch
/usr/share/zsh/vendor-completions/_sshwatch
/usr/share/fish/vendor_completions.d/sshwatch.fish
/usr/share/man/man1/sshwatch.1.gz
/usr/share/doc/sshwatch/copyright"
# The docs are whatever scripts/package.sh found (README.md, ARCHITECTURE.md, docs/*.md, ...); the README
# must be among them once the repo has one.
docs=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' | grep '^/usr/share/doc/sshwatch/' | grep -v '/copyright$')
[ -n "$docs" ] && expected_deb_files+=$'\n'"$docs"
note "docs in the .deb: $(echo "$docs" | xargs -n1 basename | tr '\n' ' ')"
if [ -f README.md ]; then
    check "the .deb carries README.md" grep -qx /usr/share/doc/sshwatch/README.md <<<"$docs"
fi
note "man pages in the .deb: $(echo "$man_pages" | xargs -n1 basename | tr '\n' ' ')"
check "the .deb has a page for every visible subcommand (9 pages)" [ "$(echo "$man_pages" | grep -c .)" -ge 9 ]

deb_files() { dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|' | sort; }
rpm_files() { rpm -qpl "$rpmfile" 2>/dev/null | sort; }

# --- Install the .deb ----------------------------------------------------------------------------------
if dpkg-query -W -f='${Status}' sshwatch 2>/dev/null | grep -q installed; then
    echo "purging the sshwatch package installed before this test" >&2
    dpkg --purge sshwatch >&2
fi
dpkg -i "$deb" >"$tmp/dpkg-i.log" 2>&1
status=$?
check "dpkg -i succeeds" [ $status -eq 0 ]
[ $status -eq 0 ] || sed 's/^/      /' "$tmp/dpkg-i.log"
check "post-install message says to review the config and then start" \
    grep -q 'Review /etc/sshwatch/sshwatch.toml' "$tmp/dpkg-i.log"
check "post-install message names 'systemctl start sshwatch'" grep -q 'systemctl start sshwatch' "$tmp/dpkg-i.log"

missing=
while read -r f; do
    [ -e "$f" ] || missing+=" $f"
done <<<"$expected_deb_files"$'\n'"$man_pages"
check "every expected file is installed${missing:+ (missing:$missing)}" [ -z "$missing" ]
listed=$(dpkg -L sshwatch | sort)
unlisted=
while read -r f; do
    grep -qxF "$f" <<<"$listed" || unlisted+=" $f"
done <<<"$expected_deb_files"
check "dpkg -L lists every expected file${unlisted:+ (not listed:$unlisted)}" [ -z "$unlisted" ]
check "/usr/bin/sshwatch is executable and runs" bash -c '/usr/bin/sshwatch --version >/dev/null'
check "the installed unit is systemd/sshwatch.service" cmp -s /lib/systemd/system/sshwatch.service systemd/sshwatch.service
check "the installed config is config/sshwatch.toml" cmp -s /etc/sshwatch/sshwatch.toml config/sshwatch.toml
check "the man page is a roff page for sshwatch(1)" bash -c 'zcat /usr/share/man/man1/sshwatch.1.gz | grep -q "^\.TH sshwatch 1"'
check "man finds sshwatch(1)" bash -c 'man -w sshwatch >/dev/null 2>&1'
check "bash completion offers the subcommands, not the hidden one" bash -c \
    'grep -q "test-pattern" /usr/share/bash-completion/completions/sshwatch && ! grep -q "generate-assets" /usr/share/bash-completion/completions/sshwatch'
check "zsh completion starts with #compdef sshwatch" bash -c 'head -1 /usr/share/zsh/vendor-completions/_sshwatch | grep -qx "#compdef sshwatch"'
check "fish completion completes sshwatch" grep -q '^complete -c sshwatch' /usr/share/fish/vendor_completions.d/sshwatch.fish
check "conffile: /etc/sshwatch/sshwatch.toml" bash -c \
    "dpkg-query -W -f='\${Conffiles}' sshwatch | grep -q '^ /etc/sshwatch/sshwatch.toml '"

# The user: a system account with no login shell and the state directory as home.
IFS=: read -r _ _ uid gid _ home shell < <(getent passwd sshwatch)
check "user sshwatch exists" [ -n "${uid:-}" ]
check "user sshwatch is a system user (uid ${uid:-?} < 1000)" [ "${uid:-1000}" -lt 1000 ]
check "user sshwatch has no login shell (${shell:-?})" bash -c "case '${shell:-}' in */nologin | */false) true ;; *) false ;; esac"
check "user sshwatch's home is /var/lib/sshwatch" [ "${home:-}" = /var/lib/sshwatch ]
check "group sshwatch exists and is the user's primary group" [ "$(getent group sshwatch | cut -d: -f3)" = "${gid:-x}" ]
check "/var/lib/sshwatch is sshwatch:sshwatch 0700" [ "$(stat -c '%U:%G %a' /var/lib/sshwatch 2>/dev/null)" = "sshwatch:sshwatch 700" ]

link=/etc/systemd/system/multi-user.target.wants/sshwatch.service
check "enabled: $link -> the unit" [ "$(readlink "$link")" = /lib/systemd/system/sshwatch.service ]
check "systemctl is-enabled says enabled (offline)" bash -c '[ "$(systemctl is-enabled sshwatch.service 2>/dev/null)" = enabled ]'
check "not started: no sshwatch process runs" bash -c '! pgrep -u sshwatch -x sshwatch >/dev/null'

# Upgrades (here: the same version again) keep the admin's choice and say nothing about first steps.
dpkg -i "$deb" >"$tmp/dpkg-upgrade.log" 2>&1
status=$?
check "reinstall succeeds and keeps the unit enabled" bash -c "[ $status -eq 0 ] && [ -L '$link' ]"
check "reinstall prints no first-install message" bash -c "! grep -q 'is installed and enabled' '$tmp/dpkg-upgrade.log'"
systemctl disable sshwatch.service >/dev/null 2>&1
dpkg -i "$deb" >"$tmp/dpkg-upgrade.log" 2>&1
check "reinstall keeps a disabled unit disabled" bash -c "[ ! -e '$link' ] && [ ! -L '$link' ]"
systemctl enable sshwatch.service >/dev/null 2>&1
check "systemctl enable works offline (no running systemd)" [ -L "$link" ]

# --- The .rpm --------------------------------------------------------------------------------------------
rpm_expected=$(deb_files | grep -v '^/usr/share/doc/sshwatch/copyright$' \
    | sed -e 's|^/lib/systemd/system/|/usr/lib/systemd/system/|' \
        -e 's|^/usr/share/zsh/vendor-completions/|/usr/share/zsh/site-functions/|' | sort)
rpm_diff=$(diff <(echo "$rpm_expected") <(rpm_files))
check "rpm -qpl lists the .deb's files (at the RPM paths)" [ -z "$rpm_diff" ]
[ -z "$rpm_diff" ] || echo "$rpm_diff" | sed 's/^/      /'
check "rpm: /etc/sshwatch/sshwatch.toml is a config file" bash -c "rpm -qpc '$rpmfile' 2>/dev/null | grep -qx /etc/sshwatch/sshwatch.toml"
check "rpm: the config is %config(noreplace)" bash -c \
    "rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' '$rpmfile' 2>/dev/null | grep -qx '/etc/sshwatch/sshwatch.toml cn'"
rpm -qp --scripts "$rpmfile" >"$tmp/rpm-scripts" 2>/dev/null
for s in preinstall postinstall preuninstall postuninstall; do
    check "rpm -qp --scripts has a $s scriptlet" grep -q "^$s scriptlet" "$tmp/rpm-scripts"
done
check "rpm scriptlets create the user" grep -q 'useradd -r -g sshwatch' "$tmp/rpm-scripts"
check "rpm scriptlets enable the unit on first install" grep -q 'systemctl --no-reload enable sshwatch.service' "$tmp/rpm-scripts"
check "rpm scriptlets disable the unit on erase" grep -q 'systemctl --no-reload disable sshwatch.service' "$tmp/rpm-scripts"
check "rpm and deb carry the same version" bash -c \
    "[ \"\$(rpm -qp --qf '%{VERSION}' '$rpmfile' 2>/dev/null)\" = \"\$(dpkg-deb -f '$deb' Version | cut -d- -f1)\" ]"

# --- systemd-analyze -------------------------------------------------------------------------------------
unit=/lib/systemd/system/sshwatch.service
systemd-analyze verify "$unit" >"$tmp/verify.out" 2>"$tmp/verify.err"
status=$?
check "systemd-analyze verify exits 0" [ $status -eq 0 ]
check "systemd-analyze verify prints nothing on stderr" [ ! -s "$tmp/verify.err" ]
[ -s "$tmp/verify.err" ] && sed 's/^/      /' "$tmp/verify.err"
systemd-analyze security --offline=true --threshold=20 "$unit" >"$tmp/security.out" 2>&1
status=$?
check "systemd-analyze security --offline=true --threshold=20 passes" [ $status -eq 0 ]
note "$(grep 'Overall exposure level' "$tmp/security.out")"

# --- The daemon: packaged config, temp log, local moto, sshwatch user, CAP_DAC_READ_SEARCH only ---------
log="$tmp/secure"
state="$tmp/state"
install -m 0600 -o root -g root /dev/null "$log"
install -d -m 0700 -o sshwatch -g sshwatch "$state"
sed -e "s|^file_path = .*|file_path = \"$log\"|" -e "s|^state_dir = .*|state_dir = \"$state\"|" \
    -e 's|^start_position = .*|start_position = "beginning"|' /etc/sshwatch/sshwatch.toml >"$tmp/sshwatch.toml"
check "the test config differs from the packaged one only in file_path, state_dir, start_position" bash -c \
    "[ \$(diff /etc/sshwatch/sshwatch.toml '$tmp/sshwatch.toml' | grep -c '^>') -eq 3 ]"

as_sshwatch_with_cap=(setpriv --reuid=sshwatch --regid=sshwatch --init-groups --no-new-privs
    --inh-caps=-all,+dac_read_search --ambient-caps=-all,+dac_read_search --bounding-set=-all,+dac_read_search)
as_sshwatch_without=(setpriv --reuid=sshwatch --regid=sshwatch --init-groups --no-new-privs
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all)

marker="pkgtest$$x$RANDOM"
for i in 1 2 3; do
    echo "$(date '+%b %e %H:%M:%S') host sshd[10$i]: Invalid user $marker-$i from 203.0.113.$i port 4242$i" >>"$log"
done
check "the log is root:root 0600" [ "$(stat -c '%U:%G %a' "$log")" = "root:root 600" ]

"${as_sshwatch_without[@]}" /usr/bin/sshwatch classify -c "$tmp/sshwatch.toml" "$log" >"$tmp/classify-nocap.out" 2>&1
status=$?
check "without the capability the sshwatch user cannot read it (EACCES)" \
    bash -c "[ $status -ne 0 ] && grep -q 'Permission denied' '$tmp/classify-nocap.out'"
"${as_sshwatch_with_cap[@]}" /usr/bin/sshwatch classify -c "$tmp/sshwatch.toml" "$log" >"$tmp/classify.out" 2>&1
check "with only CAP_DAC_READ_SEARCH it reads it: classify counts 3 InvalidUserMetrics" \
    grep -q '"InvalidUserMetrics":3' "$tmp/classify.out"
grep -q '"InvalidUserMetrics":3' "$tmp/classify.out" || sed 's/^/      /' "$tmp/classify.out"

bad="$tmp/bad.toml"
printf '[source]\nno_such_key = 1\n' >"$bad"
/usr/bin/sshwatch run --config "$bad" >/dev/null 2>&1
status=$?
check "a config error exits 78 (the unit's RestartPreventExitStatus), got $status" [ $status -eq 78 ]

# moto, the local CloudWatch endpoint.
[ -x .venv/bin/moto_server ] || scripts/setup-test-env.sh >&2
if [ -x .venv/bin/moto_server ]; then
    moto=.venv/bin/moto_server
    py=.venv/bin/python
else
    moto=moto_server
    py=python3
fi
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
"$moto" -H 127.0.0.1 -p "$port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "$endpoint" && break
    sleep 0.2
done
check "moto is up at $endpoint" curl -s -o /dev/null "$endpoint"

# A stand-in for systemd's notify socket, so READY=1, STATUS= and WATCHDOG=1 are checked too.
notify_sock="$tmp/notify.sock"
"$py" -u -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
while True:
    for line in s.recv(65536).decode(errors="replace").splitlines():
        print(line, flush=True)
' "$notify_sock" >"$tmp/notify.log" 2>&1 &
notify_pid=$!
for _ in $(seq 50); do [ -S "$notify_sock" ] && break; sleep 0.1; done

env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/var/lib/sshwatch \
    AWS_ENDPOINT_URL="$endpoint" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
    AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    NOTIFY_SOCKET="$notify_sock" WATCHDOG_USEC=4000000 \
    "${as_sshwatch_with_cap[@]}" /usr/bin/sshwatch run --config "$tmp/sshwatch.toml" >"$tmp/daemon.log" 2>&1 &
daemon_pid=$!
sleep 2
if kill -0 "$daemon_pid" 2>/dev/null; then
    pass "sshwatch run starts as the sshwatch user"
    st=/proc/$daemon_pid/status
    check "the daemon runs as uid ${uid:-?}" bash -c "awk '/^Uid:/ {exit !(\$2 == \"${uid:-x}\")}' $st"
    check "its effective capabilities are CAP_DAC_READ_SEARCH only" bash -c "grep -qx 'CapEff:[[:space:]]*0000000000000004' $st"
    check "its bounding set is CAP_DAC_READ_SEARCH only" bash -c "grep -qx 'CapBnd:[[:space:]]*0000000000000004' $st"
else
    wait "$daemon_pid"
    fail "sshwatch run starts as the sshwatch user (exited with $?)"
    daemon_pid=
fi

# Lines appended while it runs arrive too.
for i in 4 5; do
    echo "$(date '+%b %e %H:%M:%S') host sshd[10$i]: Invalid user $marker-$i from 203.0.113.$i port 4242$i" >>"$log"
done
log_group=$(sed -n 's/^log_group_name = "\(.*\)"/\1/p' "$tmp/sshwatch.toml")
"$py" - "$endpoint" "$log_group" "$marker" <<'EOF' >"$tmp/readback.out" 2>&1
import sys, time
import boto3
endpoint, group, marker = sys.argv[1:4]
logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id="testing", aws_secret_access_key="testing")
want = {f"Invalid user {marker}-{i} " for i in range(1, 6)}
got = set()
deadline = time.time() + 60
while time.time() < deadline:
    try:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
            for e in page["events"]:
                for w in want:
                    if w in e["message"]:
                        got.add(w)
    except logs.exceptions.ResourceNotFoundException:
        pass
    if got == want:
        print(f"all {len(want)} lines arrived in log group {group}")
        sys.exit(0)
    time.sleep(1)
print(f"arrived {len(got)} of {len(want)} lines in log group {group}")
sys.exit(1)
EOF
status=$?
check "the 0600 log's lines (3 before start, 2 appended) arrive in moto: $(tail -1 "$tmp/readback.out")" [ $status -eq 0 ]
check "the daemon wrote its checkpoint into the state dir" bash -c "[ -n \"\$(ls -A '$state')\" ]"
check "sd_notify: READY=1 sent" grep -qx 'READY=1' "$tmp/notify.log"
check "sd_notify: STATUS= lines sent" grep -q '^STATUS=' "$tmp/notify.log"
note "last $(grep '^STATUS=' "$tmp/notify.log" | tail -1)"
check "sd_notify: WATCHDOG=1 sent" grep -qx 'WATCHDOG=1' "$tmp/notify.log"

if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid"
    for _ in $(seq 150); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$daemon_pid" 2>/dev/null; then
        fail "SIGTERM stops the daemon within 15 s (the unit's TimeoutStopSec)"
        kill -KILL "$daemon_pid"
        wait "$daemon_pid" 2>/dev/null
    else
        wait "$daemon_pid"
        status=$?
        check "SIGTERM stops the daemon within 15 s with status 0 (got $status)" [ $status -eq 0 ]
    fi
    daemon_pid=
    check "sd_notify: STOPPING=1 sent" grep -qx 'STOPPING=1' "$tmp/notify.log"
fi
if [ $failures -ne 0 ]; then
    note "daemon output (last 20 lines):"
    tail -20 "$tmp/daemon.log" | sed 's/^/      /'
fi

# --- Remove, then purge ----------------------------------------------------------------------------------
dpkg -r sshwatch >"$tmp/dpkg-r.log" 2>&1
check "dpkg -r succeeds" [ $? -eq 0 ]
check "remove: the binary is gone" [ ! -e /usr/bin/sshwatch ]
check "remove: the unit is disabled (no enable symlink)" [ ! -L "$link" ]
check "remove: the conffile stays" [ -f /etc/sshwatch/sshwatch.toml ]
check "remove: the user stays" bash -c 'getent passwd sshwatch >/dev/null'

dpkg --purge sshwatch >"$tmp/dpkg-purge.log" 2>&1
check "dpkg --purge succeeds" [ $? -eq 0 ]
leftover=
while read -r f; do
    [ -e "$f" ] && leftover+=" $f"
done <<<"$expected_deb_files"$'\n'"$man_pages"$'\n'"/etc/sshwatch"$'\n'"/var/lib/sshwatch"
check "purge: no file, /etc/sshwatch or /var/lib/sshwatch left${leftover:+ (left:$leftover)}" [ -z "$leftover" ]
check "purge: no enable symlink" bash -c "[ ! -e '$link' ] && [ ! -L '$link' ]"
check "purge: no deb-systemd-helper state" bash -c \
    '[ -z "$(find /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked -name "sshwatch*" 2>/dev/null)" ]'
check "purge: the user is gone" bash -c '! getent passwd sshwatch >/dev/null'
check "purge: the group is gone" bash -c '! getent group sshwatch >/dev/null'
check "purge: dpkg forgot the package" bash -c '! dpkg-query -W sshwatch >/dev/null 2>&1'

echo "$((checks - failures)) passed, $failures failed"
[ $failures -eq 0 ]
