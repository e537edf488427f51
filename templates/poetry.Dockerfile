{%- set plan = cookiecutter | torch_plan %}
# {{ cookiecutter.project_name }}: torch {{ plan.torch }}, {% if plan.cuda %}CUDA {{ plan.cuda }}{% else %}CPU{% endif %} build, Python {{ plan.python }}, for {{ plan.platforms | join(" and ") }}.
#
#   docker build -t {{ cookiecutter.project_slug }} .                         # final stage: runtime
#   docker build --target test -t {{ cookiecutter.project_slug }}-test . && docker run --rm {{ cookiecutter.project_slug }}-test
#   docker build --target lock --output type=local,dest=. .   # writes poetry.lock; no Poetry needed
#   docker build --target runtime-slim -t {{ cookiecutter.project_slug }}:slim .   # smaller: no headers, tests, symbols
#   docker build --target runtime-compile -t {{ cookiecutter.project_slug }}:compile .   # + g++: serves through torch.compile
#   docker buildx build --platform {{ plan.platforms | join(",") }} -t REGISTRY/{{ cookiecutter.project_slug }} --push .   # multi-platform
#
# Nothing here names an architecture: the one lock holds the wheels of every platform, and each
# platform's build installs its own (the installer picks the wheel whose tags match).
#
# Behind a TLS-intercepting proxy, pip and Poetry trust the CA bundle given as a secret (never
# stored in a layer): docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt .
# Mirrors: --build-arg PACKAGE_INDEX_URL=https://mirror/simple/ --build-arg TORCH_INDEX_URL=https://mirror/whl
# --build-arg PYTHON_IMAGE=registry.example.com/dockerhub/library/python (a Docker Hub mirror).
# (TORCH_INDEX_URL is the index base, like the template's torch_index_url: the {{ plan.index_suffix }} build is added.)
# docker compose passes them from the environment: CA_BUNDLE, PACKAGE_INDEX_URL, TORCH_INDEX_URL,
# PYTHON_IMAGE.

# The lock's Python: keep them equal to pyproject.toml's requires-python.
ARG PYTHON_VERSION={{ plan.python }}
ARG DEBIAN_RELEASE={{ plan.debian_release }}
# The official python image, or a mirror of it.
ARG PYTHON_IMAGE=python
# Where packages come from (the project's answers); a stage that uses one names it again (ARG
# scope is per stage).
ARG PACKAGE_INDEX_URL={{ plan.package_index }}
ARG TORCH_INDEX_URL={{ plan.index_base }}
# The venv the test stage checks: builder (the runtime's) or slim-venv (runtime-slim's).
ARG TEST_VENV=builder

# --- base: the build stages' Python, with pip quiet and a helper for locked installs ---
FROM ${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS base
ARG PACKAGE_INDEX_URL
ARG UV_VERSION={{ tools.uv }}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# uv installs the locked files about twice as fast as pip, hashes still required (docs/benchmarks.md of the template).
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install --index-url "${PACKAGE_INDEX_URL}" "uv==${UV_VERSION}"
COPY docker/install_locked.sh /usr/local/bin/install-locked

# --- poetry: Poetry and its export plugin, at the versions this project's CI uses ---
FROM base AS poetry
ARG PACKAGE_INDEX_URL
ARG POETRY_VERSION={{ tools.poetry }}
ARG POETRY_EXPORT_VERSION={{ tools["poetry-plugin-export"] }}
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install --index-url "${PACKAGE_INDEX_URL}" \
        "poetry==${POETRY_VERSION}" "poetry-plugin-export==${POETRY_EXPORT_VERSION}"

# --- lock: `--target lock --output type=local,dest=.` writes poetry.lock, nothing else ---
FROM poetry AS locking
# An existing poetry.lock comes along, so Poetry keeps the versions it already pins.
COPY pyproject.toml poetry.lock* ./
# The image's Python is the project's, so Poetry needs no virtualenv to lock.
RUN --mount=type=cache,target=/root/.cache/pypoetry \
    --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export REQUESTS_CA_BUNDLE=/run/secrets/ca-bundle; fi \
    && POETRY_VIRTUALENVS_CREATE=false poetry lock
FROM scratch AS lock
COPY --from=locking /src/poetry.lock /

# --- requirements: poetry.lock -> hash-pinned requirement files (Poetry stays in this stage) ---
FROM poetry AS requirements
COPY pyproject.toml poetry.lock ./
COPY docker/export_requirements.py /usr/local/lib/
RUN python /usr/local/lib/export_requirements.py --output-dir /requirements

# --- builder: the locked runtime dependencies in /opt/venv, torch{% if plan.cuda %} and its CUDA wheels{% endif %} in a layer of its own ---
FROM base AS builder
ARG PACKAGE_INDEX_URL
ARG TORCH_INDEX_URL
# uv runs from the base image and installs into the venv, so the venv carries neither uv nor pip.
RUN python -m venv --without-pip /opt/venv
# Each install binds only its own file: a change to main.txt leaves the torch layer cached.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,from=requirements,source=/requirements/torch.txt,target=/tmp/torch.txt \
    install-locked /tmp/torch.txt --extra-index-url "${TORCH_INDEX_URL}/{{ plan.index_suffix }}/"
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,from=requirements,source=/requirements/main.txt,target=/tmp/main.txt \
    install-locked /tmp/main.txt

{% include "slim-venv.Dockerfile" %}
# --- test: the project's own test suite and linters, run with `docker run` ---
FROM ${TEST_VENV} AS test
ARG PACKAGE_INDEX_URL
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,from=requirements,source=/requirements/dev.txt,target=/tmp/dev.txt \
    install-locked /tmp/dev.txt
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml ./
COPY src/ src/
COPY tests/ tests/
# `docker run IMAGE` runs the fast layer; arguments go to pytest (`-m slow`: the slow one).
ENTRYPOINT ["python", "-m", "pytest", "-p", "no:cacheprovider"]

{% include "runtime.Dockerfile" %}
