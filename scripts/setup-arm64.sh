#!/usr/bin/env bash
# Lets this x64 Debian machine run arm64 programs, for `npm run test:arm64` (scripts/test-arm64.js): qemu-user and
# binfmt_misc run each arm64 executable under qemu-aarch64, its children included, against Debian's arm64 C and C++
# libraries (an official arm64 Node links both). As root; does nothing that is already done. Exits 0 when arm64
# programs can run here, else 1 with one line saying why (not root, no apt, binfmt_misc not mountable, as in an
# unprivileged container).
set -uo pipefail

no() {
  echo "arm64 emulation is not available here: $*" >&2
  exit 1
}

[ "$(uname -m)" = aarch64 ] && exit 0 # an arm64 machine runs them natively
[ "$(uname -m)" = x86_64 ] || no "this is $(uname -m), not x86_64"
[ "$(id -u)" = 0 ] || no "setting it up needs root (qemu-user-static, binfmt_misc)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null || no "no apt-get/dpkg (a Debian system is needed)"

packages=(qemu-user-static binfmt-support libc6:arm64 libstdc++6:arm64)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  dpkg --add-architecture arm64 || no "dpkg --add-architecture arm64 failed"
  apt-get update -q >/dev/null || no "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null || no "apt-get install ${packages[*]} failed"
fi
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || no "cannot mount binfmt_misc on $binfmt"
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || [ -e "$binfmt/qemu-aarch64" ] ||
  no "update-binfmts --enable qemu-aarch64 failed"
# update-binfmts leaves an entry that is registered but switched off (or binfmt_misc as a whole) as it is.
for entry in "$binfmt/status" "$binfmt/qemu-aarch64"; do
  grep -qx disabled "$entry" 2>/dev/null && { echo 1 >"$entry" || no "cannot switch on $entry"; }
done
grep -qx enabled "$binfmt/qemu-aarch64" 2>/dev/null || no "qemu-aarch64 is not enabled in $binfmt"
