#!/usr/bin/env bash
# Set up (idempotent) and run every test: unit tests, then integration tests that start the real
# Kafka, Triton and chDB themselves. Extra arguments go to pytest (e.g. -k, -m "not models").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium drives the dashboard test (tests/integration/test_dashboard.py).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing chromium (apt-get; for the dashboard test)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null \
      || { echo "test: apt-get install chromium failed: install it by hand (apt-get install -y chromium)" >&2; exit 1; }
  else
    echo "test: /usr/bin/chromium not found and not root with apt-get: the dashboard test will be skipped (fix: sudo apt-get install -y chromium)"
  fi
fi
.venv/bin/python scripts/gen_protos.py --check
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra "$@"
