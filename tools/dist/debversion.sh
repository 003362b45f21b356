#!/bin/sh
# Prints the Debian package version for VERSION, the output of
# `git describe --tags --always --dirty` that the Makefile stamps into the binaries:
#
#   v1.4.0                    1.4.0
#   v1.4.0-rc.1               1.4.0~rc.1             (~ sorts before 1.4.0)
#   v1.4.0-dirty              1.4.0+0.dirty          (after 1.4.0, before the next commit's)
#   v1.4.0-3-g1a2b3c4         1.4.0+3.g1a2b3c4       (3 commits after v1.4.0, before 1.4.1)
#   v1.4.0-3-g1a2b3c4-dirty   1.4.0+3.g1a2b3c4.dirty
#   1a2b3c4 (no tag yet)      0.0.0~git1a2b3c4       (before any release)
#   1a2b3c4-dirty             0.0.0~git1a2b3c4+dirty
#   dev (no git)              0.0.0~dev
#
# A tag is v (optional), then a digit, and has a dot (vMAJOR.MINOR.PATCH): an abbreviated
# commit hash never has one, even when it is all digits. Debian versions without a
# revision allow only letters, digits and . + ~ (deb-version(5)): anything else becomes '.'.
#
# Usage: debversion.sh VERSION
set -eu

[ $# -eq 1 ] || {
	echo "usage: debversion.sh VERSION" >&2
	exit 2
}
v=${1#v}
dirty=''
case $v in
*-dirty)
	v=${v%-dirty}
	dirty=yes
	;;
esac

case $v in
[0-9]*.*)
	# TAG[-N-gHASH]: git's suffix, when present, is commits since the tag and the hash.
	tag=$(printf '%s\n' "$v" | sed 's/-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$//')
	since=${v#"$tag"}
	# The rest of a tag after its first '-' is a pre-release (1.4.0-rc.1).
	case $tag in
	*-*) tag="${tag%%-*}~${tag#*-}" ;;
	esac
	out=$tag
	if [ -n "$since" ]; then
		out="$out+$(printf '%s\n' "$since" | sed 's/^-\([0-9]*\)-g/\1.g/')"
	elif [ -n "$dirty" ]; then
		# +0 keeps it below 1.4.0+1.g...: dpkg puts +dirty above +1.
		out="$out+0"
	fi
	;;
'')
	out=0.0.0~unknown
	;;
*)
	# A commit hash without a tag, or something else (dev): before every release.
	case $v in
	*[!0-9a-f]*) out="0.0.0~$v" ;;
	*) out="0.0.0~git$v" ;;
	esac
	;;
esac

if [ -n "$dirty" ]; then
	case $out in
	*+*) out="$out.dirty" ;;
	*) out="$out+dirty" ;;
	esac
fi
printf '%s\n' "$out" | sed 's/[^A-Za-z0-9.+~]/./g'
