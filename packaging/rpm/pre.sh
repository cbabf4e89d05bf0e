# sshwatch %pre: create the `sshwatch` system user and group.
getent group sshwatch >/dev/null || groupadd -r sshwatch
getent passwd sshwatch >/dev/null || \
    useradd -r -g sshwatch -d /var/lib/sshwatch -M -s /usr/sbin/nologin -c "sshwatch daemon" sshwatch
exit 0
