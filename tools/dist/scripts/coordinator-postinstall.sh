#!/bin/sh
# postinst of deployme-coordinator. dpkg runs it as `postinst configure OLD_VERSION`, with
# OLD_VERSION empty on a first install (deb-postinst(5)). Every step is safe to repeat.
set -e

user=deployme
state=/var/lib/deployme
unit=deployme-coordinator.service

# abort-upgrade, abort-remove, abort-deconfigure: the old package's prerm stopped nothing,
# so there is nothing to put back.
[ "$1" = configure ] || exit 0

# The service's User= and Group=. A system user has no password and /usr/sbin/nologin as
# its shell. It is kept on remove and purge: a uid freed and reused would hand whatever
# it still owns (copies of the state, backups) to the next user that gets it.
if ! getent group "$user" >/dev/null; then
	addgroup --system --quiet "$user"
fi
if ! getent passwd "$user" >/dev/null; then
	adduser --system --quiet --ingroup "$user" --home "$state" --no-create-home "$user"
fi

# The Raft log, snapshots, keyring and admin token. systemd creates it too
# (StateDirectory=), but only when the service starts; this way it is there, private,
# for a coordinator run by hand as the deployme user as well. Not recursive: what is
# inside is the coordinator's.
mkdir -p "$state"
chown "$user:$user" "$state"
chmod 0700 "$state"

# Without a running systemd (a container, a chroot building an image) the unit is left
# alone: enable it later with `systemctl enable deployme-coordinator`.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ -z "$2" ]; then
		systemctl enable --quiet "$unit"
		if systemctl start "$unit"; then
			echo "deployme-coordinator: started; the first admin token is in $state/admin-token"
		else
			echo "deployme-coordinator: the service did not start: see journalctl -u $unit" >&2
		fi
	else
		# An upgrade: a running coordinator restarts on the new binary; one the
		# operator stopped or disabled stays so.
		systemctl try-restart "$unit" ||
			echo "deployme-coordinator: the service did not restart: see journalctl -u $unit" >&2
	fi
fi
