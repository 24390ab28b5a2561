#!/usr/bin/env bash
# The whole test suite on a fresh machine: install bulkmail with its test extras, install and
# start the test peers (Debian packages, PostgreSQL), then run pytest. Extra arguments go to
# pytest (e.g. `bash scripts/test.sh -k dkim`).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -e '.[test,fast]'
bash scripts/install-test-peers.sh
python3 -m pytest -q "$@"
