{%- set plan = cookiecutter | torch_plan %}
{%- set both = plan.accelerator == "cpu+cuda" %}
{%- set extra = ' --extra "${TORCH_BUILD}"' if both else "" %}
# {{ cookiecutter.project_name }}: torch {{ plan.torch }}, {% if both %}CPU and CUDA {{ plan.cuda }} builds{% elif plan.cuda %}CUDA {{ plan.cuda }} build{% else %}CPU build{% endif %}, Python {{ plan.python }}, for {{ plan.platforms | join(" and ") }}.
#
#   docker build -t {{ cookiecutter.project_slug }} .                         # final stage: runtime
{%- if both %}
#   docker build --build-arg TORCH_BUILD={{ plan.index_suffix }} -t {{ cookiecutter.project_slug }}:{{ plan.index_suffix }} .   # the CUDA build (default: cpu)
{%- endif %}
#   docker build --target test -t {{ cookiecutter.project_slug }}-test . && docker run --rm {{ cookiecutter.project_slug }}-test
#   docker build --target lock --output type=local,dest=. .   # writes uv.lock; no uv needed
#   docker build --target runtime-slim -t {{ cookiecutter.project_slug }}:slim .   # smaller: no headers, tests, symbols
#   docker build --target runtime-compile -t {{ cookiecutter.project_slug }}:compile .   # + g++: serves through torch.compile
#   docker buildx build --platform {{ plan.platforms | join(",") }} -t REGISTRY/{{ cookiecutter.project_slug }} --push .   # multi-platform
#
# Nothing here names an architecture: uv.lock holds the wheels of every platform, and each
# platform's build installs its own. The image installs exactly what uv.lock says, from the URLs
# it records: the indexes (pyproject.toml's [[tool.uv.index]], the template's answers) are a lock
# fact, so a new mirror means `uv lock` again. PACKAGE_INDEX_URL is where pip finds uv itself.
#
# Behind a TLS-intercepting proxy, pip and uv trust the CA bundle given as a secret (never
# stored in a layer): docker build --secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt .
# docker compose passes CA_BUNDLE, PACKAGE_INDEX_URL and PYTHON_IMAGE from the environment.

# The lock's Python: keep them equal to pyproject.toml's requires-python.
ARG PYTHON_VERSION={{ plan.python }}
ARG DEBIAN_RELEASE={{ plan.debian_release }}
# The official python image, or a mirror of it.
ARG PYTHON_IMAGE=python
ARG PACKAGE_INDEX_URL={{ plan.package_index }}
{%- if both %}
# The torch build to install, an extra of pyproject.toml: cpu or {{ plan.index_suffix }}.
ARG TORCH_BUILD=cpu
{%- endif %}
# The venv the test stage checks: builder (the runtime's) or slim-venv (runtime-slim's).
ARG TEST_VENV=builder

# --- uv: the build stages' Python and uv (neither pip nor uv reaches a runtime image) ---
FROM ${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS uv
ARG PACKAGE_INDEX_URL
ARG UV_VERSION={{ tools.uv }}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && pip install --index-url "${PACKAGE_INDEX_URL}" "uv==${UV_VERSION}"
# The image's Python (the one requires-python matches; never a downloaded one), the venv the
# runtime copies, files copied out of the cache mount rather than linked, bytecode compiled
# (start-up imports twice as fast).
ENV UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/opt/venv UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src

# --- lock: `--target lock --output type=local,dest=.` writes uv.lock, nothing else ---
FROM uv AS locking
# An existing uv.lock comes along, so uv keeps the versions it already pins.
COPY pyproject.toml uv.lock* ./
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv lock
FROM scratch AS lock
COPY --from=locking /src/uv.lock /

# --- torch-lock: the locked torch packages alone (a PEP 751 file that changes only when they do) ---
FROM uv AS torch-lock
{%- if both %}
ARG TORCH_BUILD
{%- endif %}
# Everything the other dependencies need is pruned, so what is left is torch and what only it needs.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    set -- --locked --no-dev --no-emit-project{{ extra }} \
    && uv export "$@"{% for name in plan.packages %} --prune {{ name }}{% endfor %} --no-hashes --no-annotate --no-header \
        | sed -n 's/^\([^= ]*\)==.*/--prune=\1/p' \
        | xargs uv export "$@" --format pylock.toml -o /pylock.torch.toml

# --- builder: the locked runtime dependencies in /opt/venv, torch{% if plan.cuda %} and its CUDA wheels{% endif %} in a layer of its own ---
FROM uv AS builder
{%- if both %}
ARG TORCH_BUILD
{%- endif %}
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,from=torch-lock,source=/pylock.torch.toml,target=/tmp/pylock.torch.toml \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv venv /opt/venv \
    && uv pip install --preview-features pylock --python /opt/venv -r /tmp/pylock.torch.toml
# The rest of the lock (no dev group). The project itself is not installed: its source is a
# layer of its own in the runtime, so a source change never rewrites the venv's layer.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv sync --locked --no-install-project --no-dev{{ extra }}

{% include "slim-venv.Dockerfile" %}
# --- test: the project's own test suite and linters, run with `docker run` ---
FROM ${TEST_VENV} AS test
{%- if both %}
ARG TORCH_BUILD
{%- endif %}
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=secret,id=ca-bundle \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    if [ -s /run/secrets/ca-bundle ]; then export SSL_CERT_FILE=/run/secrets/ca-bundle; fi \
    && uv sync --locked --no-install-project{{ extra }}
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml ./
COPY src/ src/
COPY tests/ tests/
# `docker run IMAGE` runs the fast layer; arguments go to pytest (`-m slow`: the slow one).
ENTRYPOINT ["python", "-m", "pytest", "-p", "no:cacheprovider"]

{% include "runtime.Dockerfile" %}
