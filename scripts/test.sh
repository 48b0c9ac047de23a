#!/usr/bin/env bash
# Set up (idempotent) and run every test: unit tests, then integration tests that start the real
# Kafka, Triton and chDB themselves. Extra arguments go to pytest (e.g. -k, -m "not models").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian tools the tests drive: headless Chromium (tests/integration/test_dashboard.py) and curl
# (tests/security/test_outside_tools.py probes the HTTP APIs as an outsider would).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing ${missing[*]} (apt-get)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >/dev/null \
      || { echo "test: apt-get install ${missing[*]} failed: install them by hand (apt-get install -y ${missing[*]})" >&2; exit 1; }
  else
    echo "test: ${missing[*]} not found and not root with apt-get: the tests that drive them will be skipped (fix: sudo apt-get install -y ${missing[*]})"
  fi
fi
.venv/bin/python scripts/gen_protos.py --check
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -ra "$@"
