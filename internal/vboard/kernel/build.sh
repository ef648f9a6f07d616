#!/usr/bin/env bash
# Builds the virtual board's x86-64 test kernel from Debian's linux-source-6.1 package
# (make tinyconfig + fragment.config) and prints the path of its bzImage on stdout.
#
# The kernel is cached outside the checkout, keyed by a hash of fragment.config, this script
# and the linux-source package version:
#   ${EDGE_VBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edged-vboard}/kernel-<hash>/bzImage
# A cached kernel is reused at no cost. The unpacked source and the object tree live beside it
# (src-<version>/, build-<version>/, replaced when the package's version changes), so a
# changed fragment rebuilds only what it must; the make output is in build-<hash>.log.
# Progress goes to stderr. Needs: linux-source-6.1, gcc, make, flex, bison, bc, libelf-dev.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment=$here/fragment.config
tarball=/usr/src/linux-source-6.1.tar.xz
cache=${EDGE_VBOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edged-vboard}

say() { echo "vboard kernel: $*" >&2; }
die() { say "$*"; exit 1; }

version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) && [ -f "$tarball" ] ||
	die "$tarball is missing: apt-get install linux-source-6.1 (.ci/install-deps test does)"
hash=$({ cat "$fragment" "$here/build.sh"; echo "linux-source-6.1 $version"; } | sha256sum | cut -c1-16)
out=$cache/kernel-$hash
if [ -f "$out/bzImage" ]; then
	echo "$out/bzImage"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/kernel.lock"
flock 9 # one build at a time; a second caller waits and then finds the kernel cached
if [ -f "$out/bzImage" ]; then
	echo "$out/bzImage"
	exit 0
fi

src=$cache/src-$version/linux-source-6.1
obj=$cache/build-$version
log=$cache/build-$hash.log
: >"$log"
trap 'status=$?; [ $status -eq 0 ] || { tail -n 40 "$log" >&2; say "failed, full log: $log"; }' EXIT
run() { "$@" >>"$log" 2>&1; }

if [ ! -f "$src/Makefile" ]; then
	for old in "$cache"/src-* "$cache"/build-*; do # an older linux-source's trees (1.5 GB)
		if [ -d "$old" ] && [ "$old" != "$cache/src-$version" ] && [ "$old" != "$obj" ]; then
			rm -rf "$old"
		fi
	done
	say "unpacking $tarball ($version)"
	rm -rf "$cache/src-$version.tmp"
	mkdir -p "$cache/src-$version.tmp"
	tar -C "$cache/src-$version.tmp" -xf "$tarball"
	rm -rf "$cache/src-$version"
	mv "$cache/src-$version.tmp" "$cache/src-$version"
fi

kmake() { run make -C "$src" O="$obj" ARCH=x86_64 "$@"; }
say "configuring (tinyconfig + $fragment) in $obj"
mkdir -p "$obj"
kmake tinyconfig
(cd "$src" && run scripts/kconfig/merge_config.sh -m -O "$obj" "$obj/.config" "$fragment")
kmake olddefconfig

# olddefconfig silently drops an option whose dependencies are not met: name each one.
dropped=0
while IFS= read -r line; do
	case $line in CONFIG_*=*) ;; *) continue ;; esac
	if ! grep -qxF "$line" "$obj/.config"; then
		name=${line%%=*}
		now=$(grep -E "^$name=|^# $name is not set" "$obj/.config" || echo "absent")
		say "fragment option $line was dropped by olddefconfig (now: $now): add what it depends on"
		dropped=1
	fi
done <"$fragment"
[ $dropped -eq 0 ] || { trap - EXIT; exit 1; }

say "building bzImage with $(nproc) jobs (about 4 minutes on 2 cores), log: $log"
kmake -j"$(nproc)" bzImage
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
cp "$obj/.config" "$out.tmp/config"
rm -rf "$out"
mv "$out.tmp" "$out"
say "cached $out/bzImage"
echo "$out/bzImage"
