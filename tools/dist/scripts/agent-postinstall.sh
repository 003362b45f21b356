#!/bin/sh
# postinst of deployme-agent. dpkg runs it as `postinst configure OLD_VERSION`, with
# OLD_VERSION empty on a first install (deb-postinst(5)). Safe to repeat.
set -e

state=/var/lib/deployme-agent
unit=deployme-agent.service

[ "$1" = configure ] || exit 0

# This host's identity (its private key and certificate): root only. systemd creates it
# too (StateDirectory=), but only when the service starts.
mkdir -p "$state"
chmod 0700 "$state"

# The agent is neither enabled nor started on a first install: without a coordinator and
# a join token it could only fail and restart forever (Restart=always).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	if [ -n "$2" ]; then
		# An upgrade: a running agent restarts on the new binary.
		systemctl try-restart "$unit" ||
			echo "deployme-agent: the service did not restart: see journalctl -u $unit" >&2
	fi
fi
if [ -z "$2" ]; then
	echo "deployme-agent: set DEPLOYME_COORDINATOR and DEPLOYME_JOIN_TOKEN in /etc/default/deployme-agent, then: systemctl enable --now $unit"
fi
