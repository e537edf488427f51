#!/usr/bin/env bash
# Make room for the Docker tests before each build. BuildKit keeps every build's layers, and one
# CUDA build takes up to ~19 GB more (pip cache mount, builder layer, the runtime's copy of the
# venv; measured 2026-12-03): a machine that runs the suite again and again fills its disk. And
# `docker system df` counts the build cache at about 2/3 of what it takes on disk (37 GB against
# 58 GB under Docker's root), so the cap below is lower than the room it leaves. So:
#   1. leave behind no image of an earlier, interrupted run (tdt-*, bench-*, dangling);
#   2. cap the build cache at KEEP_GB, least recently used first, so a rerun stays warm;
#   3. if less than NEED_GB is still free under Docker's root, drop the whole build cache;
#   4. fail with a clear message when even that is not enough.
set -euo pipefail
DOCKER=${DOCKER:-docker}
NEED_GB=${DOCKER_TESTS_NEED_GB:-30}
KEEP_GB=${DOCKER_TESTS_KEEP_CACHE_GB:-20}

root=$("$DOCKER" info --format '{{.DockerRootDir}}')
free_gb() { df -BG --output=avail "$root" | tail -n 1 | tr -dc '0-9'; }

stale=$("$DOCKER" image ls -q --filter 'reference=tdt-*' --filter 'reference=bench-*')
[ -z "$stale" ] || "$DOCKER" rmi -f $stale >/dev/null
"$DOCKER" image prune -f >/dev/null
"$DOCKER" builder prune -f --keep-storage "${KEEP_GB}GB" >/dev/null

if [ "$(free_gb)" -lt "$NEED_GB" ]; then
  echo "ensure-docker-space: $(free_gb) GB free under $root; dropping the build cache" >&2
  "$DOCKER" builder prune -af >/dev/null
fi
if [ "$(free_gb)" -lt "$NEED_GB" ]; then
  echo "ensure-docker-space: the Docker tests need ${NEED_GB} GB free under $root;" \
    "only $(free_gb) GB are, with Docker's build cache already empty. Free some disk and rerun." >&2
  exit 1
fi
echo "ensure-docker-space: $(free_gb) GB free under $root" >&2
