{%- set plan = cookiecutter | torch_plan %}
# --- runtime-base: slim base, non-root user, health check, entry point (the venv comes next) ---
FROM ${PYTHON_IMAGE}:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime-base
{%- if plan.cuda %}
# No CUDA base image: the torch wheels bring their CUDA libraries (nvidia-* packages in the venv);
# the host needs only the NVIDIA driver >= {{ plan.min_linux_driver }} and the NVIDIA Container Toolkit.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
{%- endif %}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app/src \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODEL_PATH=/app/artifacts/model.pt \
    PORT=8000
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/artifacts \
    && chown app:app /app/artifacts
WORKDIR /app
USER 10001:10001
EXPOSE 8000
VOLUME ["/app/artifacts"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --start-interval=1s --retries=3 \
    CMD ["python", "-m", "{{ cookiecutter.package_name }}.healthcheck"]
ENTRYPOINT ["python", "-m", "{{ cookiecutter.package_name }}"]
CMD ["serve"]

# --- runtime-compile: the runtime + a C++ compiler, serving through torch.compile ---
# Inductor writes and compiles {% if plan.cuda %}Triton (CUDA) and {% endif %}C++ kernels when the service starts:
# that needs g++ and Python's headers (the python image has them); the size it adds is in the
# template's docs/service-benchmarks.md. runtime and runtime-slim stay without a compiler, and
# TORCH_COMPILE=1 there is refused at start-up.
FROM runtime-base AS runtime-compile
USER 0:0
# g++ comes from the base image's Debian release, which fixes its version.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
USER 10001:10001
ENV TORCH_COMPILE=1
COPY --link --from=builder /opt/venv /opt/venv
COPY --link src/ /app/src/

# --- runtime-slim: runtime-base + the slimmed venv + the source ---
FROM runtime-base AS runtime-slim
COPY --link --from=slim-venv /opt/venv /opt/venv
COPY --link src/ /app/src/

# --- runtime (the default target): runtime-base + the venv + the source ---
FROM runtime-base AS runtime
COPY --link --from=builder /opt/venv /opt/venv
COPY --link src/ /app/src/
