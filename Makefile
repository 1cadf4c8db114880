# cotwatch: one command for the demo, one for the tests. Both set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: chromium onnx-models setup demo demo-adapters test lint types unit integration e2e check audit eval bench chaos sam-build clean

setup: $(STAMP) onnx-models infra/kafka/lib/.fetched chromium

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch from PyPI is large: pip's cache serves it after the first install on a machine.
	$(BIN)/pip install -q -e ".[ml,onnx,local,train,dev]"
	@touch $(STAMP)

# The scorer's ONNX encoders (EMBEDDING_BACKEND=onnx|onnx-int8, template.yaml's ScorerEmbeddingBackend), exported into
# ~/.cache/cotwatch/onnx (or COTWATCH_ONNX_DIR); each command skips when its export is current (docs/onnx.md).
onnx-models: $(STAMP)
	$(BIN)/cotwatch export-onnx
	$(BIN)/cotwatch export-onnx --quantize int8

# Debian's chromium for the report's browser test (tests/integration/test_tracking_rollups.py); installed where
# missing when we are root (CI, the dev machines), else the command to run is printed.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "the report test needs Debian's chromium: sudo apt-get install -y chromium"; exit 1; fi; }

# Kafka broker jars from Maven Central (pinned in infra/kafka/pom.xml), into a git-ignored folder.
infra/kafka/lib/.fetched: infra/kafka/pom.xml | $(STAMP)
	$(BIN)/python -c "from cotwatch_local.kafka_broker import KafkaBroker; KafkaBroker().ensure_jars()"
	@touch $@

## demo: start Kafka + moto, publish the demo traces, score them, print alerts, stop everything
demo: setup
	$(BIN)/cotwatch demo

## demo-adapters: the same demo, its traces produced through TraceWriter and the OpenAI stream tee (loopback SSE)
demo-adapters: setup
	$(BIN)/cotwatch demo --via-adapters

## test: lint, types, then every test (unit, integration on moto, end to end on Kafka + moto, template)
test: setup lint types
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy
	@for app in functions/*/app.py; do echo "mypy $$app"; $(BIN)/mypy $$app || exit 1; done

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: setup
	$(BIN)/python -m pytest tests/integration

e2e: setup
	$(BIN)/python -m pytest tests/e2e

check: test

## audit: known vulnerabilities in the installed dependencies (pip-audit, PyPI's vulnerability data). --strict
## fails when a package could not be audited, so an unreachable service is an error, never a silent pass.
## Not part of `make test`: on machines whose index mirror lacks PyPI's per-release JSON every package is
## skipped (docs/security.md).
audit: $(STAMP)
	$(BIN)/pip-audit --strict --progress-spinner off

## eval: detection figures on the development data (see docs/detection.md)
eval: setup
	$(BIN)/cotwatch eval --data ../shared/data/dev.jsonl

## bench: scorer throughput vs raw encoding, cold start, peak RSS, produce-to-alert latency, cost (docs/performance.md)
bench: setup
	nice -n 10 $(BIN)/cotwatch bench --json

## chaos: N chunks (default 10000) through a private broker + moto while the poller is SIGKILLed, the broker
## restarts, 5% of AWS calls fail and 1% of records are poison or duplicates; compared with a fault-free run
CHAOS_N ?= 10000
chaos: setup
	$(BIN)/python -m cotwatch_local.chaos run -n $(CHAOS_N)

sam-build:
	bash infra/sam-build-zip.sh

clean:
	$(BIN)/cotwatch local down || true
	rm -rf .cotwatch .pytest_cache .mypy_cache .ruff_cache .aws-sam
