#!/usr/bin/env bash
# Make Debian trixie's packages installable on a bookworm machine, as root, with a low apt pin:
# only what is installed with `-t trixie` moves to trixie, everything else stays on bookworm.
# Used for what bookworm lacks: a recent Docker engine (ensure-docker.sh) and kustomize (test).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs trixie /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian trixie main" >/etc/apt/sources.list.d/trixie.list
fi
if [ ! -f /etc/apt/preferences.d/trixie-low ]; then
  cat >/etc/apt/preferences.d/trixie-low <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
fi
apt-get update -qq
