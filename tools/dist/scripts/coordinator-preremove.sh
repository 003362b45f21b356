#!/bin/sh
# prerm of deployme-coordinator. dpkg runs `prerm remove` before removing the files, and
# `prerm upgrade NEW_VERSION` before an upgrade, after which the new postinst restarts
# the service (deb-prerm(5)). Safe to repeat.
set -e

unit=deployme-coordinator.service

case "$1" in
remove | deconfigure)
	if [ -d /run/systemd/system ]; then
		# A failed stop must not leave the package impossible to remove.
		systemctl stop "$unit" || echo "deployme-coordinator: stopping $unit failed" >&2
	fi
	# disable only removes the unit's symlinks, so it works without a running systemd
	# too, for a unit enabled in a chroot or by hand.
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --quiet "$unit" || echo "deployme-coordinator: disabling $unit failed" >&2
	fi
	;;
esac
