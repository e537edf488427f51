#!/bin/sh
# install-locked FILE [PIP OPTION...]: install a hash-pinned requirement file into /opt/venv, the
# same way for every layer: wheels only, no dependency resolution, every file checked against the
# lock's hashes. Trusts the ca-bundle build secret when one is given (an empty one is ignored).
set -eu
requirements=$1
shift
if [ -s /run/secrets/ca-bundle ]; then
  export PIP_CERT=/run/secrets/ca-bundle
fi
exec pip --python /opt/venv/bin/python install --no-deps --require-hashes --only-binary=:all: \
  --index-url "${PACKAGE_INDEX_URL:?declare ARG PACKAGE_INDEX_URL in this stage}" -r "$requirements" "$@"
