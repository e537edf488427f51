#!/usr/bin/env bash
# Make sure a Docker engine with buildx and compose answers; install and start one when none does.
# Debian bookworm lacks a recent engine, so docker.io & co come from trixie with a low apt pin:
# only the five packages named below move to trixie, everything else stays on bookworm.
set -euo pipefail

DOCKER=/usr/bin/docker   # the packaged client: the first `docker` on PATH may be a bare one without plugins

engine_ok() {
  [ -x "$DOCKER" ] && "$DOCKER" info >/dev/null 2>&1 \
    && "$DOCKER" buildx version >/dev/null 2>&1 && "$DOCKER" compose version >/dev/null 2>&1
}

if engine_ok; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1 || ! "$DOCKER" buildx version >/dev/null 2>&1 \
    || ! "$DOCKER" compose version >/dev/null 2>&1; then
  echo "ensure-docker: installing docker.io, buildx and compose from Debian trixie" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! grep -rqs trixie /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian trixie main" >/etc/apt/sources.list.d/trixie.list
  fi
  cat >/etc/apt/preferences.d/trixie-low <<'PIN'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  apt-get update -qq
  apt-get install -y -qq -t trixie --no-install-recommends \
    docker.io docker-cli docker-buildx docker-compose containerd >/dev/null
fi
# debootstrap builds the stand-in base images (tests/docker_bases.py)
command -v debootstrap >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null

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

if ! engine_ok; then
  echo "ensure-docker: no working Docker engine; see /var/log/dockerd.log" >&2
  tail -n 20 /var/log/dockerd.log >&2 || true
  exit 1
fi
"$DOCKER" version --format 'ensure-docker: engine {{.Server.Version}} ready' >&2
