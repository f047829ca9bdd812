#!/usr/bin/env bash
# Container smoke test (see smoke.py): SKIP where no Docker engine runs, else PASS/FAIL.
set -euo pipefail
cd "$(dirname "$0")/../.."
python="${PYTHON:-.venv/bin/python}"
exec "$python" tests/docker/smoke.py "$@"
