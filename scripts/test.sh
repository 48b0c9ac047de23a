#!/usr/bin/env bash
# Set up (idempotent) and run every test: unit tests, then integration tests that start the real
# Kafka, Triton and chDB themselves. Extra arguments go to pytest (e.g. -k, -m "not models").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# A real OpenAI-compatible server for the live-endpoint tests (pyproject's live-server extra):
# llama.cpp builds from source once (~4 min on 2 cores, no tools or examples), then pip's wheel cache.
CMAKE_BUILD_PARALLEL_LEVEL=2 \
  CMAKE_ARGS="-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF" \
  .venv/bin/python -m pip install -q -c scripts/requirements.lock -e ".[dev,live-server]"
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
