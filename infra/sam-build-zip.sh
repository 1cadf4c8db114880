#!/usr/bin/env bash
# Build a zip-packaged function of template.yaml - AlertsApiFunction and the SharedLayer it uses (which the other
# zip functions share) - with the SAM CLI.
# Needs no Docker and no AWS credentials, only python3.11 on PATH (the runtime's exact Python, for the
# function's pip workflow) and make (the layer's build method).
#
# The scorer and the roll-up are container images: `sam build` of them (and `sam local`) needs a Docker engine,
# so they are not built here.
#
# The SAM CLI pins its own boto3, cfn-lint, ... so it lives in a separate virtualenv, .venv-sam, which this
# script creates on first use (from PyPI).
#
# Usage: infra/sam-build-zip.sh [BUILD_DIR]      (default: .aws-sam/build-zip)
#        infra/sam-build-zip.sh --install-only  (just make sure .venv-sam has the SAM CLI)
# Environment: SAM_VENV overrides the virtualenv location.
set -euo pipefail

SAM_CLI_VERSION=1.170.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SAM_VENV:-$root/.venv-sam}

if ! "$venv/bin/sam" --version 2>/dev/null | grep -qF "$SAM_CLI_VERSION"; then
  echo "installing aws-sam-cli==$SAM_CLI_VERSION into $venv" >&2
  python3.11 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
fi
if [[ ${1:-} == --install-only ]]; then
  exit 0
fi
build_dir=${1:-$root/.aws-sam/build-zip}

export SAM_CLI_TELEMETRY=0
cd "$root"
start=$SECONDS
# Naming the function builds it and the layers it references (SharedLayer), nothing else.
"$venv/bin/sam" build AlertsApiFunction --template-file template.yaml --build-dir "$build_dir"
echo "sam build AlertsApiFunction (+ SharedLayer): $((SECONDS - start)) s -> $build_dir" >&2
