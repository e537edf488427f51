#!/usr/bin/env bash
# Install and start a Docker engine with buildx and compose on a disposable Debian machine, as root.
# The image tests run this only under CI=true or TDT_INSTALL_ENGINE=1 (template_testing/engine.py);
# everywhere else, install Docker Desktop or Docker Engine yourself.
# Debian bookworm lacks a recent engine, so docker.io & co come from trixie with a low apt pin:
# only the five packages named below move to trixie, everything else stays on bookworm.
set -euo pipefail

DOCKER=${DOCKER:-docker}

engine_ok() {
  command -v "$DOCKER" >/dev/null && "$DOCKER" info >/dev/null 2>&1 \
    && "$DOCKER" buildx version >/dev/null 2>&1 && "$DOCKER" compose version >/dev/null 2>&1
}

if engine_ok; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v "$DOCKER" >/dev/null \
    || ! "$DOCKER" buildx version >/dev/null 2>&1 || ! "$DOCKER" compose version >/dev/null 2>&1; then
  # shellcheck disable=SC1091
  if ! (. /etc/os-release && [ "$ID" = debian ]) || [ "$(id -u)" != 0 ]; then
    echo "ensure-docker: no Docker engine with buildx and compose, and this is not a Debian machine" \
      "run as root, so none is installed here: install Docker Engine or Docker Desktop" >&2
    exit 1
  fi
  echo "ensure-docker: installing docker.io, buildx and compose from Debian trixie" >&2
  bash "$(dirname "$0")/trixie-apt.sh"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie --no-install-recommends \
    docker.io docker-cli docker-buildx docker-compose containerd >/dev/null
fi
if ! "$DOCKER" info >/dev/null 2>&1; then
  echo "ensure-docker: starting dockerd" >&2
  # A dockerd or containerd killed with the last session leaves pid files that block a restart.
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then rm -f "$pidfile"; fi
  done
  mkdir -p /var/log
  setsid nohup dockerd >/var/log/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    "$DOCKER" info >/dev/null 2>&1 && break
    sleep 1
  done
fi

DOCKER=$(command -v "$DOCKER" || echo "$DOCKER")
if ! engine_ok; then
  echo "ensure-docker: no working Docker engine with buildx and compose ($DOCKER); see /var/log/dockerd.log" >&2
  tail -n 20 /var/log/dockerd.log >&2 || true
  exit 1
fi
"$DOCKER" version --format 'ensure-docker: engine {{.Server.Version}} ready' >&2
