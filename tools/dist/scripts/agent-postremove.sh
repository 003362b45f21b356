#!/bin/sh
# postrm of deployme-agent: `postrm remove` once the files are gone, `postrm purge` when
# the configuration goes too (after a remove, or instead of one); deb-postrm(5). dpkg
# removes the conffile /etc/default/deployme-agent itself on purge. Safe to repeat.
set -e

case "$1" in
purge)
	# This host's identity: once it is gone the host must join again, as a new host.
	# Kept on remove, so that a reinstall resumes as the same host.
	rm -rf /var/lib/deployme-agent
	;;
esac

case "$1" in
remove | purge)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
	fi
	;;
esac
