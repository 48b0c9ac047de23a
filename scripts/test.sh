#!/usr/bin/env bash
# Set up (idempotent) and run every test: unit tests, then integration tests that start the real
# Kafka, Triton and chDB themselves. Extra arguments go to pytest (e.g. -k, -m "not models").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/gen_protos.py --check
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra "$@"
