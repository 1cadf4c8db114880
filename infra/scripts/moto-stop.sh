#!/usr/bin/env bash
# Thin wrapper: the logic lives in cotwatch_local.moto_server (see its main()). Extra arguments are passed on,
# e.g. --port 0 or --state-dir DIR. PYTHON overrides the interpreter (default: the repo's .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
exec "${PYTHON:-$root/.venv/bin/python}" -m cotwatch_local.moto_server stop "$@"
