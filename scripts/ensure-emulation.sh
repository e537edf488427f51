#!/usr/bin/env bash
# Offline fallback only: let this machine run containers of another architecture under QEMU user
# emulation (qemu-user-static and binfmt-support from Debian, as root). The image tests run this
# only under CI=true or TDT_INSTALL_ENGINE=1, for a linux/arm64 build on an x86_64 host;
# elsewhere: `docker run --privileged --rm tonistiigi/binfmt --install arm64`, or Docker Desktop.
# Usage: ensure-emulation.sh aarch64
set -euo pipefail
machine=${1:?usage: ensure-emulation.sh MACHINE (e.g. aarch64)}
entry=/proc/sys/fs/binfmt_misc/qemu-$machine

if [ -f "$entry" ] && head -n 1 "$entry" | grep -qx enabled; then
  exit 0
fi
if ! (. /etc/os-release && [ "$ID" = debian ]) || [ "$(id -u)" != 0 ]; then
  echo "ensure-emulation: no QEMU binfmt handler for $machine, and this is not a Debian machine" \
    "run as root: register one (docker run --privileged --rm tonistiigi/binfmt --install all)" >&2
  exit 1
fi
echo "ensure-emulation: installing qemu-user-static and binfmt-support from Debian for $machine" >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  qemu-user-static binfmt-support >/dev/null
[ -d /proc/sys/fs/binfmt_misc ] && [ -f /proc/sys/fs/binfmt_misc/register ] \
  || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable "qemu-$machine" || true
if ! head -n 1 "$entry" 2>/dev/null | grep -qx enabled; then
  echo "ensure-emulation: the qemu-$machine binfmt handler is still not enabled" >&2
  exit 1
fi
echo "ensure-emulation: $machine programs run under $(qemu-"$machine"-static --version | head -n 1)" >&2
