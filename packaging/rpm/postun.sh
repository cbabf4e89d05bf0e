# sshwatch %postun: reload systemd; on upgrade restart a running daemon on the new binary.
# RPM has no purge: /var/lib/sshwatch and the `sshwatch` user stay (remove them by hand if wanted).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
    if [ "$1" -ge 1 ]; then
        systemctl try-restart sshwatch.service >/dev/null 2>&1 || true
    fi
fi
exit 0
