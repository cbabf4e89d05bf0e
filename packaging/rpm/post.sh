# sshwatch %post: state directory; on first install enable (not start) the unit.
# systemd's StateDirectory= creates it too; this makes `sshwatch run` work outside systemd.
install -d -m 0700 -o sshwatch -g sshwatch /var/lib/sshwatch
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" -eq 1 ]; then
    # Not a preset: the point of installing sshwatch is to run it. Works without a running systemd.
    systemctl --no-reload enable sshwatch.service >/dev/null 2>&1 || true
    cat <<'MSG'

sshwatch is installed and enabled, but not started.
  1. Review /etc/sshwatch/sshwatch.toml (the log file, log group and metric filters).
  2. Give the instance role the policy printed by `sshwatch iam-policy`.
  3. Start it: systemctl start sshwatch
Its health: systemctl status sshwatch; its log: journalctl -u sshwatch

MSG
fi
exit 0
