# --- slim-venv: the same venv without what serving and training never load (docker/slim_venv.sh) ---
FROM builder AS slim-venv
# strip comes with binutils; the base image's Debian release fixes its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,source=docker/slim_venv.sh,target=/usr/local/bin/slim-venv \
    slim-venv /opt/venv
