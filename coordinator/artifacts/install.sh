#!/bin/sh
# Installs the deployme agent on this host and points it at a deployme coordinator. Served
# by the coordinator at /install.sh; a join token's answer carries the line that runs it:
#
#   curl -sfL http://COORDINATOR/install.sh | sh -s -- --coordinator HOST:PORT \
#       --join-token dpj_... --ca-hash sha256:...
#
# --help lists the options. Everything happens in main, called on the last line, so a
# download cut short runs nothing at all.
set -eu
# No pathname expansion anywhere: every value below is data, never a pattern.
set -f
# Files are created private and opened up with chmod where they should be: the settings
# file holds the join token.
umask 077

# This coordinator's HTTP address: the binary and its checksum come from there.
DEPLOYME_URL={{shquote .URL}}
NAME={{.Name}}
# os-release IDs the agent supports; a distribution whose ID_LIKE names one is welcome too.
SUPPORTED_OS='debian ubuntu rhel centos fedora rocky almalinux'

usage() {
	cat <<'EOF'
Usage: install.sh --coordinator HOST:PORT[,HOST:PORT] --join-token TOKEN [options]
       install.sh --uninstall [--purge] [--prefix DIR]

Installs the deployme agent as /usr/local/bin/deployme-agent with its settings in
/etc/default/deployme-agent and the systemd unit deployme-agent.service, then enables and
starts it. The binary is downloaded from the coordinator that served this script and
checked against the SHA-256 it publishes. Running it again upgrades the binary, rewrites
the settings and restarts the agent; the host keeps its identity (/var/lib/deployme-agent).

Options:
  --coordinator HOST:PORT[,..]  coordinator gRPC address(es) (required)
  --join-token TOKEN            join token, dpj_... (required)
  --ca-hash sha256:HEX          pin the coordinator's agent CA (recommended)
  --labels k=v[,k=v..]          host labels, e.g. rack=r12,zone=a
  --no-start                    install the files but do not enable or start the service
  --uninstall                   stop, disable and remove the agent; keep its state directory
  --purge                       with --uninstall, remove the state directory too: the host
                                forgets its identity and must join again as a new host
  --prefix DIR                  install under DIR instead of / (staging, tests): no root
                                needed, DIR/etc/os-release is checked, systemctl never runs
  -h, --help                    show this help
EOF
}

say() { printf 'deployme: %s\n' "$*"; }
die() {
	printf 'deployme: error: %s\n' "$*" >&2
	exit 1
}
usage_error() {
	printf 'deployme: %s (see --help)\n' "$*" >&2
	exit 2
}
have() { command -v "$1" >/dev/null 2>&1; }

# write_unit prints deployme-agent.service, the same file the packages install.
write_unit() {
	cat <<'{{.UnitEnd}}'
{{.Unit}}
{{.UnitEnd}}
}

# os_field NAME FILE prints a field of os-release, unquoted and lowercase. The file is
# parsed, not sourced: nothing in it runs.
os_field() {
	sed -n "s/^$1=//p" "$2" | head -n 1 | tr -d "\"'" | tr '[:upper:]' '[:lower:]'
}

check_os() {
	release=$root/etc/os-release
	[ -r "$release" ] || release=$root/usr/lib/os-release
	[ -r "$release" ] || die "cannot tell which operating system this is: there is no $root/etc/os-release"
	os_id=$(os_field ID "$release")
	os_like=$(os_field ID_LIKE "$release")
	for d in $os_id $os_like; do
		case " $SUPPORTED_OS " in
		*" $d "*) return 0 ;;
		esac
	done
	die "unsupported operating system: ID=${os_id:-unknown}${os_like:+, ID_LIKE=$os_like}. The agent supports Debian, Ubuntu, RHEL, CentOS, Fedora, Rocky Linux and AlmaLinux, and distributions derived from them; nothing was installed"
}

check_arch() {
	machine=$(uname -m)
	case $machine in
	x86_64 | amd64) arch=amd64 ;;
	*) die "unsupported architecture: $machine. The agent is built for x86_64 (amd64) only; nothing was installed" ;;
	esac
}

# fetch URL FILE WHAT downloads URL into FILE. With curl, an answer other than 200 is shown
# as the coordinator gave it (its JSON error says what is wrong). Transient failures (429
# after Retry-After, 503, timeouts) are retried a few times.
fetch() {
	if have curl; then
		status=$(curl -sS -L --retry 3 --connect-timeout 10 -o "$2" -w '%{http_code}' "$1") ||
			die "cannot download $3 from $1"
		[ "$status" = 200 ] || die "cannot download $3 from $1: HTTP $status: $(head -c 400 "$2" 2>/dev/null)"
	else
		wget -q -T 30 -t 3 -O "$2" "$1" || die "cannot download $3 from $1 (wget failed)"
	fi
}

# place SRC DEST MODE installs SRC as DEST with MODE. The copy is made beside DEST and
# renamed over it: DEST is never seen half-written or with looser permissions, a running
# agent's binary is replaced rather than rewritten ("text file busy"), and the new file
# gets its directory's SELinux label instead of the temporary directory's.
place() {
	dest_dir=$(dirname "$2")
	(umask 022 && mkdir -p "$dest_dir")
	cp "$1" "$2.new.$$"
	chmod "$3" "$2.new.$$"
	mv -f "$2.new.$$" "$2"
}

need_root() {
	if [ -z "$prefix_given" ] && [ "$(id -u)" != 0 ]; then
		die "this must run as root: pipe the script into 'sudo sh -s -- ...' (or stage the files with --prefix DIR)"
	fi
}

install_agent() {
	[ -n "$coordinator" ] || usage_error "--coordinator is required"
	[ -n "$token" ] || usage_error "--join-token is required"
	# The values end up in /etc/default/deployme-agent, which systemd reads as KEY=value
	# lines: they are checked here so none can smuggle in a quote, a space or a new line.
	case $coordinator in
	*[!]A-Za-z0-9._:,[-]*) usage_error "--coordinator: $coordinator is not HOST:PORT[,HOST:PORT]" ;;
	esac
	case $token in
	*[!A-Za-z0-9_-]*) usage_error "--join-token: letters, digits, '_' and '-' only" ;;
	esac
	if [ -n "$ca_hash" ]; then
		hex=${ca_hash#sha256:}
		case $hex in
		"$ca_hash" | *[!0-9a-fA-F]*) usage_error "--ca-hash: want sha256: and 64 hex digits" ;;
		esac
		[ ${#hex} -eq 64 ] || usage_error "--ca-hash: want sha256: and 64 hex digits"
	fi
	case $labels in
	*[!A-Za-z0-9._/=,-]*) usage_error "--labels: want k=v[,k=v..] with no spaces" ;;
	esac

	need_root
	check_os
	check_arch
	have curl || have wget || die "neither curl nor wget is installed: install one of them"
	have sha256sum || die "sha256sum is not installed (coreutils): the download cannot be checked"
	start=yes
	if [ -n "$prefix_given" ] || [ -n "$no_start" ]; then
		start=''
	elif ! have systemctl || [ ! -d /run/systemd/system ]; then
		die "systemd is not running on this host: rerun with --no-start to install the files only, then start /usr/local/bin/$NAME yourself"
	fi

	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	trap 'exit 130' HUP INT TERM

	say "downloading the agent from $DEPLOYME_URL"
	query="os=linux&arch=$arch"
	fetch "$DEPLOYME_URL/v1/agent/download?$query" "$tmp/$NAME" "the agent binary"
	fetch "$DEPLOYME_URL/v1/agent/download.sha256?$query" "$tmp/$NAME.sha256" "the agent binary's checksum"
	want=$(sed -n '1s/^\([0-9a-f]\{64\}\)  .*$/\1/p' "$tmp/$NAME.sha256")
	[ -n "$want" ] || die "the coordinator's checksum is malformed: $(head -c 200 "$tmp/$NAME.sha256")"
	got=$(sha256sum "$tmp/$NAME" | cut -d ' ' -f 1)
	if [ "$got" != "$want" ]; then
		die "checksum mismatch: the download was tampered with or corrupted (its sha256 is $got, the coordinator publishes $want); nothing was installed"
	fi
	say "sha256 $got verified"

	{
		echo "# Written by the deployme install script ($DEPLOYME_URL/install.sh); read by $NAME.service."
		echo "DEPLOYME_COORDINATOR=$coordinator"
		echo "DEPLOYME_JOIN_TOKEN=$token"
		[ -z "$ca_hash" ] || echo "DEPLOYME_CA_HASH=$ca_hash"
		echo "DEPLOYME_STATE_DIR=/var/lib/$NAME"
		[ -z "$labels" ] || echo "DEPLOYME_LABELS=$labels"
	} >"$tmp/defaults"
	write_unit >"$tmp/unit"

	place "$tmp/$NAME" "$root/usr/local/bin/$NAME" 0755
	place "$tmp/defaults" "$root/etc/default/$NAME" 0600
	place "$tmp/unit" "$root/etc/systemd/system/$NAME.service" 0644
	(umask 022 && mkdir -p "$root/var/lib")
	mkdir -p "$root/var/lib/$NAME"
	chmod 0700 "$root/var/lib/$NAME"
	say "installed $root/usr/local/bin/$NAME, $root/etc/default/$NAME and $root/etc/systemd/system/$NAME.service"
	[ -n "$ca_hash" ] || say "warning: without --ca-hash the agent trusts the first coordinator CA it is shown"

	if [ -z "$start" ]; then
		say "not started (--prefix or --no-start); on the host: systemctl daemon-reload && systemctl enable --now $NAME"
		return 0
	fi
	systemctl daemon-reload
	systemctl enable --quiet "$NAME.service"
	# restart rather than start: when the script runs again, the agent picks up the new
	# binary and settings.
	systemctl restart "$NAME.service"
	say "started $NAME.service; follow it with: journalctl -u $NAME -f"
}

uninstall_agent() {
	need_root
	systemd=''
	if [ -z "$prefix_given" ] && have systemctl && [ -d /run/systemd/system ]; then
		systemd=yes
		systemctl disable --now --quiet "$NAME.service" 2>/dev/null || true
	fi
	rm -f "$root/usr/local/bin/$NAME" "$root/etc/default/$NAME" "$root/etc/systemd/system/$NAME.service"
	if [ -n "$systemd" ]; then
		systemctl daemon-reload
	fi
	if [ -n "$purge" ]; then
		rm -rf "$root/var/lib/$NAME"
		say "removed the agent and its state directory"
	else
		say "removed the agent; kept $root/var/lib/$NAME, this host's identity (--uninstall --purge removes it)"
	fi
}

main() {
	coordinator='' token='' ca_hash='' labels='' uninstall='' purge='' no_start='' prefix_given='' root=''
	while [ $# -gt 0 ]; do
		opt=$1
		case $opt in
		--*=*)
			# --opt=value: split it and go round again.
			shift
			set -- "${opt%%=*}" "${opt#*=}" "$@"
			continue
			;;
		--coordinator | --join-token | --ca-hash | --labels | --prefix)
			[ $# -ge 2 ] || usage_error "$opt needs a value"
			val=$2
			shift 2
			case $opt in
			--coordinator) coordinator=$val ;;
			--join-token) token=$val ;;
			--ca-hash) ca_hash=$val ;;
			--labels) labels=$val ;;
			--prefix)
				[ -n "$val" ] || usage_error "--prefix needs a directory"
				prefix_given=yes
				case $val in
				/*) root=$val ;;
				*) root=$(pwd)/$val ;;
				esac
				# "/" and "dir/" lose their trailing slash; $root/etc then reads well.
				while [ "${root%/}" != "$root" ]; do root=${root%/}; done
				;;
			esac
			;;
		--uninstall) uninstall=yes && shift ;;
		--purge) purge=yes && shift ;;
		--no-start) no_start=yes && shift ;;
		-h | --help)
			usage
			exit 0
			;;
		*) usage_error "unknown argument: $opt" ;;
		esac
	done
	[ -z "$purge" ] || [ -n "$uninstall" ] || usage_error "--purge goes with --uninstall"
	if [ -n "$uninstall" ]; then
		uninstall_agent
	else
		install_agent
	fi
}

main "$@"
