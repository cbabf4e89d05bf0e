#!/usr/bin/env bash
# sshwatch as an operator runs it: the packages installed on a real systemd host, attacked by a real
# OpenSSH client, with everything asserted on what arrived at the (local) CloudWatch endpoint.
#
# The host is a Debian 12 root (debootstrap, cached under /var/tmp) booted with systemd as PID 1 by
# `systemd-nspawn -b`; it shares this machine's network, so its sshd (on 127.0.0.1:2222 only) is attacked
# from here with ssh/sshpass, and the daemon reaches moto, the local CloudWatch endpoint, through a
# switchable proxy (scripts/host-test/proxy.py) that the outage scenarios take down and bring back.
#
# First boot, the .deb (dpkg -i), scenarios:
#   a  RHEL-style /var/log/secure (rsyslog, traditional format, 0600 root), the default config
#   b  Debian's RFC 3339 /var/log/auth.log, configured by `sshwatch init`
#   d  logrotate -f during an attack: the distribution's create + postrotate config, then copytruncate
#   e  the endpoint down for 3 x WatchdogSec: no watchdog restart; then a real hang (SIGSTOP) must be caught
#   f  systemctl stop during an outage: stops in time without SIGKILL, nothing lost after a start
#   c  journal only (rsyslog masked, no file): the default config follows the journal
#   c2 the journal across a reboot: what sshd logged after the checkpoint in the previous boot arrives
#   g  systemctl status shows the live Status line; WARN/ERROR lines of the journal say what, why, next
#   h  systemd-analyze security of the running unit
#   i  dpkg -r, dpkg --purge
# Then a fresh root for the .rpm (Debian's `rpm -i --nodeps`, so its scriptlets run under systemd):
# install, the /var/log/secure scenario, rpm -e.
# Each file or journal scenario checks that every line arrived once and in order, and that the per-minute
# Sums published equal `sshwatch classify` (the packaged binary, the same config) of the shipped lines
# grouped by the minute of their timestamp (the daemon counts a line into the minute it read it).
#
#   sudo scripts/host-test.sh              # builds both packages with scripts/package.sh first
#   sudo scripts/host-test.sh DEB RPM      # tests packages built earlier
#
# Prints PASS:/FAIL: per check, the daemon's journal when a scenario failed, and `N passed, N failed` at
# the end; exits non-zero if any check failed. KEEP=1 keeps the work directory (the roots, logs).
# Needs root, Debian's packages reachable (the first run debootstraps the root: 1 to 2 minutes) and the
# Python venv of scripts/setup-test-env.sh (run here when missing). About 5 minutes with the root cached.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "host-test.sh: must run as root (it boots a container)" >&2
    exit 2
fi
if [ $# -ne 0 ] && [ $# -ne 2 ]; then
    echo "usage: scripts/host-test.sh [DEB RPM]" >&2
    exit 2
fi

started=$SECONDS
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
indent() { sed 's/^/      /'; }
say() { echo "== $* ($((SECONDS - started)) s)"; }

work=$(mktemp -d /var/tmp/sshwatch-host-test.XXXXXX)
chmod 0755 "$work"
moto_pid=
proxy_pid=
ct_nspawn=
ct_leader=
ct_root=
summary() {
    echo "host-test.sh: $((SECONDS - started)) s"
    echo "$((checks - failures)) passed, $failures failed"
}
cleanup() {
    local status=$?
    declare -F ct_shutdown >/dev/null && ct_shutdown
    for pid in $proxy_pid $moto_pid; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then
        echo "host-test.sh: kept $work" >&2
    else
        rm -rf "$work"
    fi
    # An early exit (a step everything else needs failed) still ends with the count.
    [ "${summarized:-}" = yes ] || summary
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until SECONDS COMMAND...: polls the command until it succeeds; fails after SECONDS.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.5
    done
}

# --- Tools ---------------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
need=
command -v debootstrap >/dev/null || need+=" debootstrap"
command -v systemd-nspawn >/dev/null || need+=" systemd-container"
command -v sshpass >/dev/null || need+=" sshpass"
command -v ssh >/dev/null || need+=" openssh-client"
command -v rpm >/dev/null || need+=" rpm"
command -v curl >/dev/null || need+=" curl"
command -v nsenter >/dev/null || need+=" util-linux"
if [ -n "$need" ]; then
    echo "host-test.sh: installing$need (Debian's packages)" >&2
    for attempt in 1 2 3 4 5 6; do
        { apt-get update -qq && apt-get install -y -qq $need; } >&2 && break
        [ $attempt = 6 ] && { echo "FAIL: cannot install$need" >&2; exit 1; }
        sleep 10 # dpkg may be locked by another job
    done
fi
scripts/setup-test-env.sh >&2 || { echo "FAIL: scripts/setup-test-env.sh" >&2; exit 1; }
py=$repo/.venv/bin/python
cw() { "$py" "$repo/scripts/host-test/cw.py" "$@"; }

# --- Packages ------------------------------------------------------------------------------------------
if [ $# -eq 2 ]; then
    deb=$(realpath "$1")
    rpmfile=$(realpath "$2")
else
    mapfile -t pkgs < <(scripts/package.sh)
    deb=${pkgs[0]:-}
    rpmfile=${pkgs[1]:-}
fi
if [ -f "$deb" ] && [ -f "$rpmfile" ]; then
    pass "packages: $(basename "$deb"), $(basename "$rpmfile")"
else
    fail "packages built (deb='$deb' rpm='$rpmfile')"
    exit 1
fi

# --- The Debian root, cached by suite and package list --------------------------------------------------
suite=bookworm
mirror=http://deb.debian.org/debian
# A small server (systemd, sshd, rsyslog, logrotate), plus what the packages need to install: adduser
# (the .deb's postinst), ca-certificates (both packages depend on it) and rpm (the second boot).
include=systemd,systemd-sysv,dbus,openssh-server,rsyslog,logrotate,procps,iproute2,adduser,ca-certificates,rpm
key=$(printf '%s\n' "$suite" minbase "$mirror" "$include" | sha256sum | cut -c1-16)
cache=/var/tmp/sshwatch-host-root-$suite-$key
exec 9>"$cache.lock"
flock 9
if [ ! -x "$cache/usr/lib/systemd/systemd" ]; then
    say "debootstrap $suite into $cache (not cached yet)"
    rm -rf "$cache.partial"
    if ! debootstrap --variant=minbase --include="$include" "$suite" "$cache.partial" "$mirror" \
        >"$work/debootstrap.log" 2>&1; then
        tail -20 "$work/debootstrap.log" | indent
        fail "debootstrap $suite"
        exit 1
    fi
    rm -rf "$cache.partial/var/cache/apt/archives"/*.deb
    mv "$cache.partial" "$cache"
fi
flock -u 9
pass "Debian root: $cache"

# --- The endpoint: moto, and the switchable proxy the daemon talks to ----------------------------------
"$repo/.venv/bin/moto_server" -H 127.0.0.1 -p 0 >/dev/null 2>"$work/moto.log" &
moto_pid=$!
wait_until 60 grep -q 'Running on http://127.0.0.1:' "$work/moto.log"
moto_port=$(sed -n 's|.*Running on http://127.0.0.1:\([0-9]*\).*|\1|p' "$work/moto.log" | head -1)
moto=http://127.0.0.1:$moto_port
"$py" -u "$repo/scripts/host-test/proxy.py" "$moto_port" >"$work/proxy.out" 2>"$work/proxy.log" &
proxy_pid=$!
wait_until 30 grep -q . "$work/proxy.out"
read -r proxy_port control_port <"$work/proxy.out"
endpoint=http://127.0.0.1:$proxy_port
if [ -n "$moto_port" ] && curl -sf -o /dev/null "$moto/moto-api/data.json" && [ -n "${control_port:-}" ]; then
    pass "moto at $moto, the proxy in front of it at $endpoint"
else
    fail "moto and the proxy start"
    cat "$work/moto.log" "$work/proxy.log" | tail -20 | indent
    exit 1
fi
endpoint_down() { curl -sf "http://127.0.0.1:$control_port/down" >/dev/null; }
endpoint_up() { curl -sf "http://127.0.0.1:$control_port/up" >/dev/null; }

# The attacker's keys: alice's own (authorized in the container) and another one, which sshd refuses.
ssh-keygen -q -t ed25519 -N '' -C alice -f "$work/alice_key"
ssh-keygen -q -t ed25519 -N '' -C attacker -f "$work/attacker_key"

# --- The container --------------------------------------------------------------------------------------
# ct COMMAND...: runs a command inside the booted container, with a clean environment.
ct() { nsenter -t "$ct_leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
ct_sh() { ct sh -c "$1"; }

# ct_boot NAME: a fresh copy of the cached root, made into the test host, booted.
ct_boot() {
    ct_root=$work/$1
    say "boot $1: copy of the cached root, systemd-nspawn -b"
    cp -a --reflink=auto "$cache" "$ct_root"
    # sshd on loopback port 2222 only: the container shares this machine's network. It logs to authpriv,
    # as RHEL's sshd_config says (Debian's default, auth, goes to auth.log only; its rule takes both).
    printf 'Port 2222\nListenAddress 127.0.0.1\nPasswordAuthentication yes\nSyslogFacility AUTHPRIV\n' \
        >"$ct_root/etc/ssh/sshd_config.d/host-test.conf"
    # RHEL's /var/log/secure: authpriv in the traditional format, 0600 root (rsyslog.conf on RHEL).
    cat >"$ct_root/etc/rsyslog.d/10-secure.conf" <<'EOF'
authpriv.* action(type="omfile" file="/var/log/secure" template="RSYSLOG_TraditionalFileFormat"
                  fileCreateMode="0600" fileOwner="root" fileGroup="root")
EOF
    install -m 0600 -o root -g root /dev/null "$ct_root/var/log/secure"
    # A real user, with a password (guessed wrong by the attack) and one authorized key.
    chroot "$ct_root" useradd -m -s /bin/bash alice
    echo 'alice:Tr0ub4dor-and-3' | chroot "$ct_root" chpasswd
    install -d -m 0700 "$ct_root/home/alice/.ssh"
    install -m 0600 "$work/alice_key.pub" "$ct_root/home/alice/.ssh/authorized_keys"
    chroot "$ct_root" chown -R alice:alice /home/alice/.ssh
    # Files for the container go here: the booted container has its own /tmp.
    install -d "$ct_root/srv/host-test"
    ct_start "$1"
}

# ct_start NAME [nspawn-boot-id]: boots the root $work/NAME (again, after a reboot). With nspawn-boot-id
# the container keeps the boot ID systemd-nspawn gave it (see below).
ct_start() {
    setsid systemd-nspawn --register=no --keep-unit --console=pipe -D "$ct_root" -b \
        </dev/null >>"$work/$1.console" 2>&1 &
    ct_nspawn=$!
    # The container's PID 1: nspawn's child, once it runs systemd.
    ct_leader=
    local deadline=$((SECONDS + 30)) pid
    while [ -z "$ct_leader" ] && [ $SECONDS -lt $deadline ]; do
        pid=$(pgrep -P "$ct_nspawn" | head -1)
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ]; then
            ct_leader=$pid
        else
            sleep 0.2
        fi
    done
    # systemctl fails until systemd listens on its socket; then --wait waits for the end of the boot.
    local state=
    deadline=$((SECONDS + 90))
    while [ -n "$ct_leader" ] && [ $SECONDS -lt $deadline ]; do
        state=$(ct timeout 90 systemctl is-system-running --wait 2>/dev/null)
        case "$state" in running | degraded | maintenance | stopping) break ;; esac
        sleep 0.5
    done
    if [ "$state" = running ]; then
        pass "boot $1: systemd $(ct systemctl --version | head -1 | cut -d' ' -f2) is PID 1, system running"
    else
        fail "boot $1: system running (state '${state:-none}')"
        [ -n "$ct_leader" ] && ct systemctl --failed --no-pager | indent
        tail -20 "$work/$1.console" | indent
        return 1
    fi
    check "boot $1: sshd listens on 127.0.0.1:2222" wait_until 30 ct_sh 'ss -ltn | grep -q "127.0.0.1:2222 "'
    [ "${2:-}" = nspawn-boot-id ] && return 0
    # One boot ID, as on a real machine. systemd-nspawn gives the container its own by mounting a file
    # over /proc/sys/kernel/random/boot_id; journald stamps every entry with it (_BOOT_ID). A unit with
    # ProtectKernelTunables=, ProtectControlGroups= or ProtectProc= gets a fresh /proc without that mount
    # and sees the kernel's boot ID instead, and `journalctl --follow` keeps only the entries of the boot
    # it sees (it adds _BOOT_ID=current to the matches): under nspawn, none. Removing nspawn's mount and
    # restarting journald gives every process of this host the kernel's boot ID.
    ct_boot_id_unify
    check "boot $1: the container's boot ID is the kernel's (journald restarted with it)" \
        [ "$(ct cat /proc/sys/kernel/random/boot_id)" = "$(cat /proc/sys/kernel/random/boot_id)" ]
}

# ct_boot_id_unify: what ct_start does unless told to keep nspawn's boot ID.
ct_boot_id_unify() {
    ct_sh 'while umount /proc/sys/kernel/random/boot_id 2>/dev/null; do :; done'
    ct systemctl restart systemd-journald.service
}

# ct_reboot NAME: `systemctl reboot` in the container (systemd-nspawn exits when its container reboots),
# then the same root booted again, keeping nspawn's new boot ID.
ct_reboot() {
    ct systemctl reboot
    local deadline=$((SECONDS + 60))
    while kill -0 "$ct_nspawn" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    ct_shutdown
    ct_start "$1" nspawn-boot-id
}

# ct_shutdown: powers the container off (nspawn turns SIGTERM into a clean shutdown), killed after 30 s.
ct_shutdown() {
    [ -n "$ct_nspawn" ] || return 0
    kill -TERM "$ct_nspawn" 2>/dev/null
    local deadline=$((SECONDS + 30))
    while kill -0 "$ct_nspawn" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$ct_nspawn" 2>/dev/null; then
        # Killing the container's PID 1 ends every process of its PID namespace; then nspawn exits.
        [ -n "$ct_leader" ] && kill -KILL "$ct_leader" 2>/dev/null
        sleep 1
        kill -KILL "$ct_nspawn" 2>/dev/null
    fi
    wait "$ct_nspawn" 2>/dev/null
    ct_nspawn=
    ct_leader=
}

# The checks run some of these in `bash -c`.
export ct_leader ct_root
export -f ct ct_sh
# --- The service ------------------------------------------------------------------------------------------
prop() { ct systemctl show -p "$1" --value sshwatch.service; }
main_pid() { prop MainPID; }
svc() { ct timeout 90 systemctl "$1" sshwatch.service; }
is_active() { [ "$(ct systemctl is-active sshwatch.service)" = active ]; }

# The endpoint, credentials and region an operator would give it in a drop-in (IMDS is off: this host is
# not an EC2 instance, and {instance_id} in the stream name falls back to the hostname).
endpoint_dropin() {
    install -d "$ct_root/etc/systemd/system/sshwatch.service.d"
    cat >"$ct_root/etc/systemd/system/sshwatch.service.d/10-endpoint.conf" <<EOF
[Service]
Environment=AWS_ENDPOINT_URL=$endpoint
Environment=AWS_REGION=us-east-1
Environment=AWS_ACCESS_KEY_ID=testing
Environment=AWS_SECRET_ACCESS_KEY=testing
Environment=AWS_EC2_METADATA_DISABLED=true
EOF
    ct systemctl daemon-reload
}

# A journal cursor now; journal_since CURSOR [journalctl options...] prints the daemon's unit journal after it.
jcursor() { ct journalctl -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
journal_since() {
    local c=$1
    shift
    ct journalctl -u sshwatch.service --no-pager -q ${c:+--after-cursor="$c"} "$@"
}

export -f prop main_pid is_active journal_since
# scenario NAME: starts a scenario; scenario_end prints the daemon's journal when one of its checks failed.
scenario_failures=0
scenario_cursor=
scenario() {
    say "scenario $1"
    scenario_failures=$failures
    scenario_cursor=$(jcursor)
}
scenario_end() {
    if [ $failures -ne $scenario_failures ] && [ -n "$ct_leader" ]; then
        note "journalctl -u sshwatch during this scenario (last 40 lines):"
        journal_since "$scenario_cursor" -o short-precise | tail -40 | indent
    fi
}

# fresh_start: the daemon stopped, the endpoint emptied and up, the daemon started (Type=notify: start
# returns once it is READY).
fresh_start() {
    svc stop
    endpoint_up
    cw reset "$moto"
    svc start
    local r=$?
    if [ $r -ne 0 ] || ! is_active; then
        fail "systemctl start sshwatch (status $r, $(ct systemctl is-active sshwatch.service))"
        return 1
    fi
}

# resume_offset FILE: where in FILE (a path inside the container) the daemon resumes when it starts next:
# the checkpoint's shipped offset when it names this file, else the file's size (start_position = "end").
resume_offset() {
    "$py" - "$ct_root" "$1" <<'EOF'
import json, os, sys
root, path = sys.argv[1], sys.argv[2]
st = os.stat(root + path)
try:
    shipped = json.load(open(root + "/var/lib/sshwatch/checkpoint.json"))["shipped"] or {}
except (OSError, ValueError, KeyError):
    shipped = {}
if shipped.get("kind") == "file" and shipped.get("path") == path and shipped["id"]["ino"] == st.st_ino:
    print(shipped["offset"])
else:
    print(st.st_size)
EOF
}

# --- The attack -----------------------------------------------------------------------------------------
ssh_opts=(-F /dev/null -p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
    -o ConnectTimeout=10 -o ServerAliveInterval=5 -o ServerAliveCountMax=2)
# attack TAG: from this machine's OpenSSH client, at most 8 connections at once: 6 unknown users
# (inv-TAG-1..6), 6 wrong passwords for alice, 2 refused keys for alice, 1 successful key login.
attack() {
    local tag=$1 i
    {
        for i in 1 2 3 4 5 6; do
            echo "sshpass -p guess$i ssh ${ssh_opts[*]} -o PubkeyAuthentication=no -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 inv-$tag-$i@127.0.0.1 true"
            echo "sshpass -p wrong$i ssh ${ssh_opts[*]} -o PubkeyAuthentication=no -o PreferredAuthentications=password -o NumberOfPasswordPrompts=1 alice@127.0.0.1 true"
        done
        for i in 1 2; do
            echo "ssh ${ssh_opts[*]} -o BatchMode=yes -o IdentitiesOnly=yes -o PreferredAuthentications=publickey -i $work/attacker_key alice@127.0.0.1 true"
        done
        echo "ssh ${ssh_opts[*]} -o BatchMode=yes -o IdentitiesOnly=yes -o PreferredAuthentications=publickey -i $work/alice_key alice@127.0.0.1 true"
    } | xargs -P 8 -I{} timeout 60 sh -c '{} </dev/null >/dev/null 2>&1; true'
}
# attack_users_arrived TAG EVENTS: every unknown user of attack TAG is in a shipped `Invalid user` line,
# whatever the files say (a line lost on its way to the file would not be in them).
attack_users_arrived() {
    local i
    for i in 1 2 3 4 5 6; do
        grep -q "Invalid user inv-$1-$i from" "$2" || return 1
    done
}

# check_lines NAME EVENTS_OUT TIMEOUT [extra-ok] EXPECT_CMD...: the log group holds exactly EXPECT_CMD's
# lines (with extra-ok: and maybe lines that are in none of the files, once each; see cw.py).
check_lines() {
    local what=$1 out=$2 timeout=$3 extra=
    shift 3
    if [ "$1" = extra-ok ]; then
        extra="extra-ok"
        shift
    fi
    if cw lines "$moto" secure "$out" "$timeout" $extra -- "$@" >"$out.report" 2>&1; then
        pass "$what: $(head -1 "$out.report")"
        tail -n +2 "$out.report" | indent
    else
        fail "$what"
        indent <"$out.report"
    fi
}
# check_metrics NAME EVENTS TIMEOUT: the published per-minute Sums equal `sshwatch classify` of the events.
check_metrics() {
    local what=$1 events=$2 timeout=$3
    if cw metrics "$moto" secure SSH LinesRead "$events" "$timeout" -- \
        nsenter -t "$ct_leader" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        sshwatch classify --config /etc/sshwatch/sshwatch.toml >"$events.metrics" 2>&1; then
        pass "$what: $(head -1 "$events.metrics")"
        tail -n +2 "$events.metrics" | indent
    else
        fail "$what"
        indent <"$events.metrics"
    fi
}
# check_status SCENARIO TEXT: `systemctl status` shows the live Status line, starting with TEXT (the daemon
# refreshes it every WatchdogSec/2).
check_status() {
    if wait_until 40 bash -c "ct systemctl status sshwatch.service --no-pager | grep -qF 'Status: \"$2'"; then
        pass "$1: systemctl status shows the live Status line: $(ct systemctl status sshwatch.service --no-pager | grep -m1 'Status:' | sed 's/^ *//')"
    else
        fail "$1: systemctl status shows a Status line starting \"$2\""
        ct systemctl status sshwatch.service --no-pager -n 0 | indent
    fi
}

# =========================================================================================================
# The .deb
# =========================================================================================================
ct_boot deb || exit 1
cp "$deb" "$ct_root/srv/host-test/sshwatch.deb"

say "install the .deb"
ct dpkg -i /srv/host-test/sshwatch.deb >"$work/dpkg-i.log" 2>&1
check "dpkg -i sshwatch.deb succeeds" [ $? -eq 0 ]
check "the unit is enabled" [ "$(ct systemctl is-enabled sshwatch.service)" = enabled ]
check "the unit is not started by the install" [ "$(ct systemctl is-active sshwatch.service)" = inactive ]
check "the .deb depends on ca-certificates" bash -c "dpkg-deb -f '$deb' Depends | grep -qw ca-certificates"
check "the .rpm requires ca-certificates" bash -c "rpm -qpR '$rpmfile' 2>/dev/null | grep -qw ca-certificates"
ct dpkg --no-act --remove ca-certificates >"$work/dpkg-remove-ca.log" 2>&1
check "dpkg will not remove ca-certificates from under sshwatch" \
    bash -c "grep -q 'sshwatch depends on ca-certificates' '$work/dpkg-remove-ca.log'"
endpoint_dropin

# ---- a: /var/log/secure, default config ------------------------------------------------------------------
scenario "a: RHEL-style /var/log/secure (traditional format, 0600 root), the default config"
check "a: /var/log/secure is root:root 0600" [ "$(ct stat -c '%U:%G %a' /var/log/secure)" = "root:root 600" ]
if fresh_start; then
    off=$(resume_offset /var/log/secure)
    attack a
    check_lines "a: every line of /var/log/secure arrived once, in order" "$work/a.events" 60 \
        tail -c +$((off + 1)) "$ct_root/var/log/secure"
    check "a: every unknown user of the attack arrived" attack_users_arrived a "$work/a.events"
    n=$(grep -c . "$work/a.events")
    check_status "a" "following /var/log/secure; read $n lines, shipped $n, retries 0, "
    # The Sums as the running daemon publishes them: each minute once it closed (plus grace_seconds).
    check_metrics "a: per-minute Sums published while running = classify of the shipped lines" "$work/a.events" 100
fi
scenario_end

# ---- b: Debian's /var/log/auth.log, configured by `sshwatch init` -----------------------------------------
scenario "b: Debian's RFC 3339 /var/log/auth.log, sshwatch init"
svc stop
ct sshwatch init --from /var/log/auth.log --output /etc/sshwatch/sshwatch.toml --force >"$work/init.log" 2>&1
check "b: sshwatch init --from /var/log/auth.log --output /etc/sshwatch/sshwatch.toml --force" [ $? -eq 0 ]
indent <"$work/init.log"
check "b: the config follows /var/log/auth.log" grep -q '^file_path = "/var/log/auth.log"' \
    "$ct_root/etc/sshwatch/sshwatch.toml"
grep '^filter_pattern' "$ct_root/etc/sshwatch/sshwatch.toml" | indent
check "b: /var/log/auth.log is in RFC 3339 format" bash -c \
    "tail -1 '$ct_root/var/log/auth.log' | grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T'"
if fresh_start; then
    off=$(resume_offset /var/log/auth.log)
    attack b
    check_lines "b: every line of /var/log/auth.log arrived once, in order" "$work/b.events" 60 \
        tail -c +$((off + 1)) "$ct_root/var/log/auth.log"
    check "b: every unknown user of the attack arrived" attack_users_arrived b "$work/b.events"
    svc stop # ships the last batch and publishes every minute, the open one too
    check_metrics "b: per-minute Sums = classify of the shipped lines (with init's filters)" "$work/b.events" 30
fi
scenario_end

# ---- d: logrotate during an attack ----------------------------------------------------------------------
scenario "d: logrotate -f during an attack (create + postrotate, then copytruncate)"
# d1: Debian's own configuration: logrotate.conf says `create`, logrotate.d/rsyslog rotates auth.log and
# tells rsyslog to reopen it (postrotate /usr/lib/rsyslog/rsyslog-rotate).
if fresh_start; then
    off=$(resume_offset /var/log/auth.log)
    ino=$(stat -c %i "$ct_root/var/log/auth.log")
    attack d1 &
    attack_pid=$!
    wait_until 30 grep -q 'inv-d1-' "$ct_root/var/log/auth.log"
    ct logrotate -f /etc/logrotate.conf >"$work/logrotate-d1.log" 2>&1
    check "d1: logrotate -f /etc/logrotate.conf (Debian's config) during the attack" [ $? -eq 0 ]
    wait $attack_pid
    old=$(find "$ct_root/var/log" -maxdepth 1 -name 'auth.log*' -inum "$ino")
    check "d1: auth.log was renamed (${old##*/}) and a new one created" bash -c \
        "[ -n '$old' ] && [ '$old' != '$ct_root/var/log/auth.log' ] && [ -f '$ct_root/var/log/auth.log' ]"
    check_lines "d1: every line of the rotated and the new auth.log arrived once, in order" "$work/d1.events" 60 \
        sh -c "tail -c +$((off + 1)) '$old'; cat '$ct_root/var/log/auth.log'"
    check "d1: every unknown user of the attack arrived" attack_users_arrived d1 "$work/d1.events"
    svc stop
    check_metrics "d1: per-minute Sums = classify of the shipped lines" "$work/d1.events" 30
fi
# d2: copytruncate, as many third-party logrotate configurations do it.
cat >"$ct_root/srv/host-test/auth-copytruncate.conf" <<'EOF'
/var/log/auth.log {
    copytruncate
    rotate 4
    missingok
}
EOF
if fresh_start; then
    off=$(resume_offset /var/log/auth.log)
    attack d2 &
    attack_pid=$!
    wait_until 30 grep -q 'inv-d2-' "$ct_root/var/log/auth.log"
    ct logrotate -f -s /srv/host-test/logrotate.state /srv/host-test/auth-copytruncate.conf \
        >"$work/logrotate-d2.log" 2>&1
    check "d2: logrotate -f with copytruncate during the attack" [ $? -eq 0 ]
    wait $attack_pid
    # The lines rsyslog wrote between logrotate's copy and its truncate are in neither file (copytruncate's
    # own race); the daemon may have read them before the truncate, so they may arrive too.
    check_lines "d2: every line of the copy and the truncated auth.log arrived once, in order" \
        "$work/d2.events" 60 extra-ok sh -c "tail -c +$((off + 1)) '$ct_root/var/log/auth.log.1'; cat '$ct_root/var/log/auth.log'"
    check "d2: every unknown user of the attack arrived" attack_users_arrived d2 "$work/d2.events"
    svc stop
    check_metrics "d2: per-minute Sums = classify of the shipped lines" "$work/d2.events" 30
fi
scenario_end

# ---- e: endpoint down for 3 x WatchdogSec; a real hang ----------------------------------------------------
scenario "e: the endpoint down for 3 x WatchdogSec (10 s), then a real hang"
cat >"$ct_root/etc/systemd/system/sshwatch.service.d/20-watchdog.conf" <<'EOF'
[Service]
WatchdogSec=10s
EOF
ct systemctl daemon-reload
if fresh_start; then
    check "e: WatchdogSec is 10 s" [ "$(prop WatchdogUSec)" = 10s ]
    off=$(resume_offset /var/log/auth.log)
    endpoint_down
    down_at=$SECONDS
    attack e
    # 3 x WatchdogSec of outage, watching for a restart meanwhile.
    restarted=
    while [ $((SECONDS - down_at)) -lt 32 ]; do
        [ "$(prop NRestarts)" = 0 ] && is_active || restarted="${restarted:-after $((SECONDS - down_at)) s}"
        sleep 1
    done
    note "after $((SECONDS - down_at)) s of outage: Status \"$(prop StatusText)\""
    nr=$(prop NRestarts)
    check "e: no restart during the outage (NRestarts $nr${restarted:+, a restart seen $restarted})" \
        [ -z "$restarted$(echo "$nr" | grep -vx 0)" ]
    check "e: no 'Watchdog timeout' in the journal" bash -c "! journal_since '$scenario_cursor' | grep -q 'Watchdog timeout'"
    endpoint_up
    check_lines "e: every line arrived once after the endpoint came back" "$work/e.events" 120 \
        tail -c +$((off + 1)) "$ct_root/var/log/auth.log"
    check "e: every unknown user of the attack arrived" attack_users_arrived e "$work/e.events"
    svc stop
    check_metrics "e: per-minute Sums = classify of the shipped lines" "$work/e.events" 30
fi
scenario_end

scenario "e (hang): the process stopped (SIGSTOP) with work in hand is caught by the watchdog"
if fresh_start; then
    off=$(resume_offset /var/log/auth.log)
    pid=$(main_pid)
    ct kill -STOP "$pid"
    attack eh # lines it cannot read while it hangs
    check "e (hang): systemd reports 'Watchdog timeout' within 10 s + 10 s" \
        wait_until 30 bash -c "journal_since '$scenario_cursor' | grep -q 'Watchdog timeout'"
    check "e (hang): the service is restarted (NRestarts 1, active, a new main PID)" \
        wait_until 30 bash -c "[ \"\$(prop NRestarts)\" = 1 ] && is_active && [ \"\$(main_pid)\" != '$pid' ]"
    check_lines "e (hang): every line written during the hang arrived once after the restart" "$work/eh.events" 60 \
        tail -c +$((off + 1)) "$ct_root/var/log/auth.log"
    check "e (hang): every unknown user of the attack arrived" attack_users_arrived eh "$work/eh.events"
    svc stop
    check_metrics "e (hang): per-minute Sums = classify of the shipped lines" "$work/eh.events" 30
fi
scenario_end

# ---- f: systemctl stop during an outage -------------------------------------------------------------------
scenario "f: systemctl stop during an outage"
if fresh_start; then
    off=$(resume_offset /var/log/auth.log)
    endpoint_down
    attack f
    wait_until 20 bash -c '[[ "$(prop StatusText)" =~ read\ [1-9] ]]'
    note "Status before the stop: \"$(prop StatusText)\""
    t0=$(date +%s%N)
    svc stop
    took_ms=$((($(date +%s%N) - t0) / 1000000))
    check "f: stopped within TimeoutStopSec ($(prop TimeoutStopUSec)): took ${took_ms} ms" [ $took_ms -le 15000 ]
    check "f: clean exit (Result $(prop Result), status $(prop ExecMainStatus))" \
        bash -c "[ \"\$(prop Result)\" = success ] && [ \"\$(prop ExecMainStatus)\" = 0 ]"
    check "f: no SIGKILL, no stop timeout in the journal" bash -c \
        "! journal_since '$scenario_cursor' | grep -Eq 'SIGKILL|timed out'"
    endpoint_up
    svc start
    check_lines "f: after start, every line arrived once" "$work/f.events" 90 tail -c +$((off + 1)) "$ct_root/var/log/auth.log"
    check "f: every unknown user of the attack arrived" attack_users_arrived f "$work/f.events"
    svc stop
    check_metrics "f: per-minute Sums = classify of the shipped lines" "$work/f.events" 30
fi
scenario_end

# ---- c: journal only --------------------------------------------------------------------------------------
scenario "c: journal only (rsyslog masked, no log file), the default config"
svc stop
rm -f "$ct_root/etc/systemd/system/sshwatch.service.d/20-watchdog.conf"
ct systemctl mask --now rsyslog.service syslog.socket >/dev/null 2>&1
rm -f "$ct_root"/var/log/secure* "$ct_root"/var/log/auth.log*
# The configuration as the package installed it.
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./etc/sshwatch/sshwatch.toml >"$ct_root/etc/sshwatch/sshwatch.toml"
ct systemctl daemon-reload
check "c: rsyslog is masked and stopped, no /var/log/secure or auth.log" bash -c \
    "[ \"\$(ct systemctl is-enabled rsyslog.service)\" = masked ] && ! ct pgrep -x rsyslogd >/dev/null && [ ! -e '$ct_root/var/log/secure' ]"
# The daemon's journal matches, and the container's time zone for rendering entries as it does.
matches=(SYSLOG_IDENTIFIER=sshd SYSLOG_IDENTIFIER=sshd-session + _COMM=sshd _COMM=sshd-session)
tz=$(cat "$ct_root/etc/timezone" 2>/dev/null || echo UTC)
if fresh_start; then
    check "c: the daemon runs journalctl --follow" wait_until 30 ct pgrep -f 'journalctl.*--follow'
    # The newest sshd entry, as the daemon took it: --after-cursor skips the entry at the cursor and assumes
    # it matches, so a cursor on any other entry would drop the first sshd entry after it.
    jc=$(ct journalctl -n 1 --show-cursor -q "${matches[@]}" | sed -n 's/^-- cursor: //p')
    attack c
    check_lines "c: every sshd journal entry arrived once, in order, rendered as a syslog line" "$work/c.events" 60 \
        sh -c "nsenter -t $ct_leader -a env -i PATH=/usr/bin:/bin journalctl -o json --all --no-pager -q \
            --after-cursor='$jc' ${matches[*]} | TZ='$tz' '$py' '$repo/scripts/host-test/cw.py' render-journal"
    check "c: every unknown user of the attack arrived" attack_users_arrived c "$work/c.events"
    n=$(grep -c . "$work/c.events")
    check_status "c" "following the journal; read $n lines, shipped $n, retries 0, "
    check "c: journalctl never failed under the unit's sandbox (no 'Failed to get boot id', no restart of it)" \
        bash -c "! journal_since '$scenario_cursor' -o cat | grep -Eq 'Failed to get boot id|journalctl exited'"
    svc stop
    check_metrics "c: per-minute Sums = classify of the shipped lines" "$work/c.events" 30
fi
scenario_end

# ---- c2: the journal across a reboot ---------------------------------------------------------------------
scenario "c2: journal only, across a reboot: what sshd logged after the checkpoint in the previous boot"
if fresh_start; then
    jc=$(ct journalctl -n 1 --show-cursor -q "${matches[@]}" | sed -n 's/^-- cursor: //p')
    attack c2a
    check_lines "c2: boot 1: every sshd entry arrived" "$work/c2a.events" 60 \
        sh -c "nsenter -t $ct_leader -a env -i PATH=/usr/bin:/bin journalctl -o json --all --no-pager -q \
            --after-cursor='$jc' ${matches[*]} | TZ='$tz' '$py' '$repo/scripts/host-test/cw.py' render-journal"
    svc stop
    checkpoint=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["shipped"]["cursor"])' \
        "$ct_root/var/lib/sshwatch/checkpoint.json")
    boot1=$(ct cat /proc/sys/kernel/random/boot_id)
    attack c2b # while the daemon is stopped: these wait in the journal, after the checkpoint
    cw reset "$moto"
    # The second boot keeps the boot ID nspawn gives it, so that it differs from the first's as after a
    # real reboot. For the daemon to see that ID too, its /proc must be the container's: this drop-in
    # turns off the three settings that give it a fresh one, for this boot only (h rates the unit without).
    cat >"$ct_root/etc/systemd/system/sshwatch.service.d/30-nspawn-boot-id.conf" <<'EOF'
[Service]
ProtectKernelTunables=no
ProtectControlGroups=no
ProtectProc=default
EOF
    say "reboot the container"
    ct_reboot deb
    check "c2: the boot ID changed with the reboot" [ "$(ct cat /proc/sys/kernel/random/boot_id)" != "$boot1" ]
    check "c2: sshwatch started at boot (the package enabled it)" wait_until 60 is_active
    check "c2: the daemon runs journalctl --follow" wait_until 30 ct pgrep -f 'journalctl.*--follow'
    attack c2c
    check_lines "c2: every sshd entry after the checkpoint, of both boots, arrived once, in order" \
        "$work/c2.events" 60 \
        sh -c "nsenter -t $ct_leader -a env -i PATH=/usr/bin:/bin journalctl -o json --all --no-pager -q \
            --after-cursor='$checkpoint' ${matches[*]} | TZ='$tz' '$py' '$repo/scripts/host-test/cw.py' render-journal"
    check "c2: every unknown user of the attack while stopped in boot 1 arrived" \
        attack_users_arrived c2b "$work/c2.events"
    check "c2: every unknown user of the attack in boot 2 arrived" attack_users_arrived c2c "$work/c2.events"
    svc stop
    check_metrics "c2: per-minute Sums = classify of the shipped lines" "$work/c2.events" 30
fi
# Back to the shipped unit and one boot ID for the rest.
rm -f "$ct_root/etc/systemd/system/sshwatch.service.d/30-nspawn-boot-id.conf"
ct systemctl daemon-reload
ct_boot_id_unify
scenario_end

# ---- g: what an operator sees in the journal --------------------------------------------------------------
scenario "g: every WARN/ERROR line of journalctl -u sshwatch says what failed, why, and what happens next"
# The daemon's own lines (not systemd's about the unit), as `journalctl -u sshwatch` shows them by default:
# the message text alone; structured fields are not shown.
ct journalctl -u sshwatch.service _COMM=sshwatch -p warning -o cat --no-pager -q >"$work/warnings.txt"
"$py" - "$work/warnings.txt" >"$work/warnings.report" <<'EOF'
import collections, re, sys
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
# A line about a failed AWS call that is retried must name the operation, the error and the delay before
# the next attempt. Other lines are listed for review.
about_call = re.compile(r"retr", re.I)
operation = re.compile(r"\b(Put|Create|Describe|Get|List|Delete)[A-Z][A-Za-z]+\b")
error = re.compile(r"refused|timed? ?out|timeout|error|unreachable|dispatch|connect|throttl|denied|reset|"
                   r"unavailable|HTTP \d{3}|status \d{3}|\b[45]\d\d\b", re.I)
delay = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|sec|seconds?|milliseconds?)\b")
bad = retries = 0
for msg, n in collections.Counter(lines).most_common():
    if about_call.search(msg):
        retries += 1
        missing = [w for w, r in (("operation", operation), ("error", error), ("next delay", delay)) if not r.search(msg)]
        if missing:
            bad += 1
            print(f"FAIL x{n}: {msg!r} (no {', '.join(missing)})")
        else:
            print(f"ok   x{n}: {msg!r}")
    else:
        print(f"note x{n}: {msg!r} (not a retry)")
print(f"{len(lines)} lines, {len(set(lines))} distinct, {retries} distinct retry lines, "
      f"{bad} of them without operation, error or delay")
sys.exit(1 if bad or not retries else 0)
EOF
status=$?
check "g: the outages left retry lines, each with operation, error and next delay: $(tail -1 "$work/warnings.report")" \
    [ $status -eq 0 ]
head -n -1 "$work/warnings.report" | head -20 | indent
scenario_end

# ---- h: systemd-analyze security ----------------------------------------------------------------------------
scenario "h: systemd-analyze security sshwatch, inside the running host"
if svc start && is_active; then
    ct systemd-analyze security sshwatch.service >"$work/security.txt" 2>&1
    exposure=$(sed -n 's/.*Overall exposure level for sshwatch.service: \([0-9.]*\).*/\1/p' "$work/security.txt")
    check "h: exposure ${exposure:-?} <= 2.0" "$py" -c "import sys; sys.exit(not float('${exposure:-99}') <= 2.0)"
    [ -n "$exposure" ] || tail -5 "$work/security.txt" | indent
else
    fail "h: systemctl start sshwatch"
fi
scenario_end

# ---- i: dpkg -r, dpkg --purge -----------------------------------------------------------------------------
scenario "i: dpkg -r and dpkg --purge with the service running"
check "i: the service runs before removal" is_active
ct dpkg -r sshwatch >"$work/dpkg-r.log" 2>&1
check "i: dpkg -r succeeds" [ $? -eq 0 ]
check "i: the service is stopped ($(ct systemctl is-active sshwatch.service))" bash -c '! is_active'
check "i: no sshwatch process is left" bash -c '! ct pgrep -x sshwatch >/dev/null'
check "i: the unit is disabled (no enable symlink)" \
    bash -c "[ ! -L '$ct_root/etc/systemd/system/multi-user.target.wants/sshwatch.service' ]"
ct dpkg --purge sshwatch >"$work/dpkg-purge.log" 2>&1
check "i: dpkg --purge succeeds" [ $? -eq 0 ]
check "i: purge removed the user and group sshwatch" bash -c '! ct getent passwd sshwatch && ! ct getent group sshwatch'
check "i: purge removed /var/lib/sshwatch and /etc/sshwatch" \
    bash -c "[ ! -e '$ct_root/var/lib/sshwatch' ] && [ ! -e '$ct_root/etc/sshwatch' ]"
scenario_end
ct_shutdown

# =========================================================================================================
# Another root for the .rpm, with Debian's rpm (no RPM dependencies here: --nodeps), under the same systemd
# =========================================================================================================
if ct_boot rpm; then
    cp "$rpmfile" "$ct_root/srv/host-test/sshwatch.rpm"
    scenario "rpm: install with rpm -i --nodeps: the scriptlets under systemd"
    ct rpm -i --nodeps /srv/host-test/sshwatch.rpm >"$work/rpm-i.log" 2>&1
    check "rpm -i --nodeps sshwatch.rpm succeeds" [ $? -eq 0 ]
    indent <"$work/rpm-i.log" | head -5
    check "rpm: %pre created the system user sshwatch" ct getent passwd sshwatch
    check "rpm: /var/lib/sshwatch is sshwatch:sshwatch 0700" \
        [ "$(ct stat -c '%U:%G %a' /var/lib/sshwatch 2>/dev/null)" = "sshwatch:sshwatch 700" ]
    check "rpm: %post enabled the unit" [ "$(ct systemctl is-enabled sshwatch.service)" = enabled ]
    check "rpm: and did not start it" [ "$(ct systemctl is-active sshwatch.service)" = inactive ]
    # (Debian's /lib is a link to /usr/lib, so systemd may name the file by either path.)
    check "rpm: systemd loads the unit the package installed in /usr/lib/systemd/system ($(prop FragmentPath))" \
        [ "$(ct readlink -f "$(prop FragmentPath)")" = /usr/lib/systemd/system/sshwatch.service ]
    endpoint_dropin
    scenario_end

    scenario "rpm a: /var/log/secure, the default config"
    if fresh_start; then
        off=$(resume_offset /var/log/secure)
        attack r
        check_lines "rpm a: every line of /var/log/secure arrived once, in order" "$work/r.events" 60 \
            tail -c +$((off + 1)) "$ct_root/var/log/secure"
        check "rpm a: every unknown user of the attack arrived" attack_users_arrived r "$work/r.events"
        svc stop
        check_metrics "rpm a: per-minute Sums = classify of the shipped lines" "$work/r.events" 30
        svc start
    fi
    scenario_end

    scenario "rpm i: rpm -e with the service running"
    check "rpm i: the service runs before removal" is_active
    ct rpm -e sshwatch >"$work/rpm-e.log" 2>&1
    check "rpm i: rpm -e succeeds" [ $? -eq 0 ]
    check "rpm i: the service is stopped ($(ct systemctl is-active sshwatch.service))" bash -c '! is_active'
    check "rpm i: no sshwatch process is left" bash -c '! ct pgrep -x sshwatch >/dev/null'
    check "rpm i: the unit is disabled (no enable symlink)" \
        bash -c "[ ! -L '$ct_root/etc/systemd/system/multi-user.target.wants/sshwatch.service' ]"
    check "rpm i: the binary and the unit are gone" \
        bash -c "[ ! -e '$ct_root/usr/bin/sshwatch' ] && [ ! -e '$ct_root/usr/lib/systemd/system/sshwatch.service' ]"
    # RPM has no purge: the user and the checkpoint stay, as docs/install.md says.
    check "rpm i: the user and /var/lib/sshwatch stay (RPM has no purge)" \
        bash -c "ct getent passwd sshwatch >/dev/null && [ -d '$ct_root/var/lib/sshwatch' ]"
    scenario_end
    ct_shutdown
fi

summary
summarized=yes
[ $failures -eq 0 ]
