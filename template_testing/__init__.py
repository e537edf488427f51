"""What the template's tests and benchmarks share: commands, the network choice (online or the
offline fallback), the Docker engine, the local torch wheel index, and baked projects' images.

Installed into the dev venv with the template (`pip install -e . --group dev`, as scripts/test
does), so tests and benchmarks import it like any package.
"""
