#!/bin/sh
# postrm of deployme-coordinator: `postrm remove` once the files are gone, `postrm purge`
# when the configuration goes too (after a remove, or instead of one); deb-postrm(5).
# dpkg removes the conffile /etc/default/deployme-coordinator itself on purge. Safe to
# repeat.
set -e

case "$1" in
purge)
	# The cluster's state on this replica: its Raft log, snapshots, keyring and admin
	# token. Kept on remove, so that a reinstall resumes where it stopped.
	rm -rf /var/lib/deployme
	;;
esac

case "$1" in
remove | purge)
	# The deployme user stays (see postinst).
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload
	fi
	;;
esac
