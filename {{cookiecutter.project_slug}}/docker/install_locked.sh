#!/bin/sh
# install-locked FILE [UV PIP OPTION...]: install a hash-pinned requirement file into /opt/venv,
# the same way for every layer: wheels only, no dependency resolution, every file checked against
# the lock's hashes, bytecode compiled (start-up imports twice as fast). Trusts the ca-bundle build
# secret when one is given (an empty one is ignored).
set -eu
requirements=$1
shift
if [ -s /run/secrets/ca-bundle ]; then
  export SSL_CERT_FILE=/run/secrets/ca-bundle
fi
# unsafe-best-match: like pip, take each file from whichever index has it (the lock's hashes decide
# which file is right), not only from the first index that lists the package.
exec uv pip install --python /opt/venv/bin/python --no-deps --require-hashes --only-binary :all: \
  --compile-bytecode --index-strategy unsafe-best-match \
  --index-url "${PACKAGE_INDEX_URL:?declare ARG PACKAGE_INDEX_URL in this stage}" -r "$requirements" "$@"
