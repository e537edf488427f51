# The comparison image for benchmarks/run.py: what a single-stage Poetry Dockerfile usually looks
# like. Build tools, Poetry and its caches stay in the image. Not a template file.
FROM python:3.11-slim-bookworm
# The template's Poetry and the baked package (benchmarks/run.py passes both).
ARG POETRY_VERSION
ARG PACKAGE
ENV POETRY_VIRTUALENVS_CREATE=false
# hadolint ignore=DL3008,DL3013,DL3042
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# hadolint ignore=DL3013,DL3042
RUN --mount=type=secret,id=ca-bundle \
    PIP_CERT=/run/secrets/ca-bundle pip install "poetry==${POETRY_VERSION}"
WORKDIR /app
COPY . .
RUN --mount=type=secret,id=ca-bundle \
    REQUESTS_CA_BUNDLE=/run/secrets/ca-bundle poetry install --only main --no-root
ENV PYTHONPATH=/app/src PACKAGE=${PACKAGE}
CMD ["sh", "-c", "exec python -m \"$PACKAGE\" serve"]
