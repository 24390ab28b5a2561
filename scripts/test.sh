#!/usr/bin/env bash
# The whole test suite on a fresh machine: install bulkmail with its test extras, install and
# start the test peers (Debian packages, PostgreSQL), run the checks (ruff lint, ruff format,
# mypy; any finding fails the run before a test starts), then run pytest. Extra arguments go to
# pytest (e.g. `bash scripts/test.sh -k dkim`). The same checks run as pre-commit hooks
# (.pre-commit-config.yaml); ruff and mypy are pinned in the test extra so every machine
# reports the same findings.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install -q -e '.[test,fast]'
bash scripts/install-test-peers.sh
python3 -m ruff check bulkmail tests scripts
python3 -m ruff format --check bulkmail tests scripts
python3 -m mypy bulkmail
python3 -m pytest -q "$@"
