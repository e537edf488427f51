#!/usr/bin/env bash
# Offline fallback only: tag stand-ins for the official python:X.Y-slim-RELEASE images when no
# registry can be reached (template_testing/engine.py calls this only then).
# Each is built from Debian's own packages (debootstrap minbase + that release's python3) and laid
# out like the official image: python/python3/pip on PATH, LANG=C.UTF-8, pip allowed to install,
# Python's C headers (torch.compile builds against them).
# Usage: seed-base-images.sh 3.11:bookworm [3.13:trixie:arm64 ...]   (cached: an existing tag is
# kept, unless it is a stand-in of an older STAND_IN version)
# A third field names another architecture (debootstrap --arch, run under QEMU user emulation):
# its stand-in is tagged tdt-ARCH/python:X.Y-slim-RELEASE, since the engine's image store keeps one
# platform per tag; builds reach it with --build-arg PYTHON_IMAGE=tdt-ARCH/python.
set -euo pipefail
DOCKER=${DOCKER:-docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STAND_IN=2  # bump when the stand-ins change: older ones are built again

unmount_under() {  # debootstrap can leave /proc and /sys mounted in the new root
  { grep -o " $1/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do umount -l "$mnt" || true; done
}

for spec in "$@"; do
  IFS=: read -r py release arch <<<"$spec"
  arch=${arch:-$(dpkg --print-architecture)}
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    image="python:${py}-slim-${release}"
  else
    image="tdt-${arch}/python:${py}-slim-${release}"
  fi
  if "$DOCKER" image inspect "$image" >/dev/null 2>&1; then
    # Pulled images have a registry digest; stand-ins carry their version in a label.
    found=$("$DOCKER" image inspect --format '{{len .RepoDigests}} {{index .Config.Labels "tdt.stand-in"}}' "$image")
    if [ "${found%% *}" != 0 ] || [ "${found#* }" = "$STAND_IN" ]; then
      echo "seed-base-images: $image present" >&2
      continue
    fi
    echo "seed-base-images: $image is an older stand-in; building it again" >&2
  fi
  if [ "${image#tdt-}" = "$image" ] && timeout 60 "$DOCKER" pull -q "$image" >/dev/null 2>&1; then
    echo "seed-base-images: pulled $image" >&2
    continue
  fi
  echo "seed-base-images: building a stand-in for $image from Debian $release ($arch)" >&2
  if ! command -v debootstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  rootfs=$(mktemp -d /tmp/rootfs-XXXXXX)
  trap 'unmount_under "$rootfs"; rm -rf "$rootfs"' EXIT
  debootstrap --arch="$arch" --variant=minbase --include=python3,python3-venv,python-is-python3,libpython3-dev,ca-certificates \
    "$release" "$rootfs" "$MIRROR" >/tmp/debootstrap-"$release-$arch".log 2>&1 \
    || { tail -n 30 /tmp/debootstrap-"$release-$arch".log >&2; exit 1; }
  unmount_under "$rootfs"
  have=$(chroot "$rootfs" python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [ "$have" != "$py" ]; then
    echo "seed-base-images: Debian $release has Python $have, not $py" >&2
    exit 1
  fi
  # The official image's pip installs anywhere; Debian's refuses system installs (PEP 668).
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  # pip from the wheel python3-venv ships, not Debian's python3-pip: that one pulls Debian-packaged
  # libraries into the path pip installs to, which breaks `pip install poetry` on trixie.
  chroot "$rootfs" sh -c 'w=$(ls /usr/share/python-wheels/pip-*.whl) && python3 "$w/pip" install -q --no-index --no-cache-dir "$w"'
  chroot "$rootfs" sh -c 'command -v pip >/dev/null' || { echo "seed-base-images: no pip on PATH in the stand-in" >&2; exit 1; }
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
         "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  tar -C "$rootfs" --one-file-system --exclude=./proc/* --exclude=./sys/* -c . | "$DOCKER" import \
    --platform "linux/$arch" \
    -c 'ENV LANG=C.UTF-8' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["python3"]' -c "LABEL tdt.stand-in=$STAND_IN" - "$image" >/dev/null
  unmount_under "$rootfs"; rm -rf "$rootfs"; trap - EXIT
  echo "seed-base-images: tagged $image" >&2
done
