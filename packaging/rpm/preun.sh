# sshwatch %preun: on erase (not upgrade), stop and disable the unit.
if [ "$1" -eq 0 ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop sshwatch.service >/dev/null 2>&1 || true
    fi
    systemctl --no-reload disable sshwatch.service >/dev/null 2>&1 || true
fi
exit 0
