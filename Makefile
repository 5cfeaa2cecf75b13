# Tollgate developer commands. Every target does its own setup: `make run` and `make test` work
# on a fresh clone with only Python 3.11 on PATH.
#
#   make run           start the whole system locally (moto + API on 127.0.0.1:3000)
#   make test          all tests (unit, integration, e2e); PYTEST_ARGS="-k foo -x" to narrow
#   make test-unit     one layer of tests (also test-integration, test-e2e)
#   make lint          ruff check + ruff format --check       (make format: fix both)
#   make typecheck     mypy (strict)
#   make openapi       rewrite docs/openapi.json and the layer's copy from the code and template.yaml
#   make bench         every benchmark of bench/ and one table (bench/report.py): cold imports,
#                      warm overhead, AWS calls, reservations/s, tokens/s, cache effect on cost;
#                      BENCH_ARGS="--markdown docs/performance.md" writes it there; then colour analysis
#   make chromium      Debian's chromium for the dashboard's browser test (make test runs it)
#   make sam-validate  sam validate --lint                    (SAM CLI in its own .venv-sam)
#   make sam-build     sam build + bytecode, then check the layer holds tollgate, data, encodings
#   make iac           checkov (offline) and cfn-lint on template.yaml: encryption, public access,
#                      least privilege, DLQs, log retention (docs/security.md); checkov in .venv-iac
#   make clean         build output and caches    (make distclean: venvs and .tollgate too)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
IAC_VENV := .venv-iac
BIN := $(VENV)/bin
SAM := $(SAM_VENV)/bin/sam
CHECKOV := $(IAC_VENV)/bin/checkov
PYTEST_ARGS ?=
BENCH_ARGS ?=

# A venv is up to date when its stamp, named after a hash of what was installed, exists.
DEV_INPUTS := requirements-dev.txt layers/tollgate/requirements.txt pyproject.toml
SAM_INPUTS := requirements-sam.txt
IAC_INPUTS := requirements-iac.txt
hash_of = $(shell cat $(1) | sha256sum | cut -c1-16)
DEV_STAMP := $(VENV)/.deps-$(call hash_of,$(DEV_INPUTS))
SAM_STAMP := $(SAM_VENV)/.deps-$(call hash_of,$(SAM_INPUTS))
IAC_STAMP := $(IAC_VENV)/.deps-$(call hash_of,$(IAC_INPUTS))

# The local runtime and the tests import the shared package by its one name from these folders.
LOCAL_PYTHONPATH := layers/tollgate:local:.

# SAM CLI: no telemetry, and a region for commands that want one (nothing here calls AWS).
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1}

# checkov offline: no PyPI update check, no platform (no API key is ever given), no download of
# guidelines or external checks.
CHECKOV_ENV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE

.PHONY: help venv sam-venv iac-venv iac run test test-unit test-integration test-e2e lint format typecheck \
	bench openapi sam-validate sam-build check clean distclean chromium

help:
	@sed -n '1,/^$$/p' $(firstword $(MAKEFILE_LIST)) | sed 's/^# \{0,1\}//'

venv: $(DEV_STAMP)

$(DEV_STAMP):
	@scripts/ensure_venv.sh $(VENV) $(PYTHON) $@ -- -r requirements-dev.txt -- -e . --no-deps

sam-venv: $(SAM_STAMP)

$(SAM_STAMP):
	@scripts/ensure_venv.sh $(SAM_VENV) $(PYTHON) $@ -- -r requirements-sam.txt

iac-venv: $(IAC_STAMP)

$(IAC_STAMP):
	@scripts/ensure_venv.sh $(IAC_VENV) $(PYTHON) $@ -- -r requirements-iac.txt

run: venv
	PYTHONPATH=$(LOCAL_PYTHONPATH) $(BIN)/python -m tollgate_local

# The whole suite must collect tests: pytest's "no tests collected" (exit 5) is an error here.
test: venv chromium
	@echo "$(BIN)/python -m pytest $(PYTEST_ARGS)"; \
	rc=0; $(BIN)/python -m pytest $(PYTEST_ARGS) || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "make test: pytest collected no tests (check testpaths)" >&2; exit 1; fi; \
	exit $$rc

# One layer may be empty for a while: that is said, not failed.
test-unit test-integration test-e2e: test-%: venv
	@echo "$(BIN)/python -m pytest tests/$* $(PYTEST_ARGS)"; \
	rc=0; $(BIN)/python -m pytest tests/$* $(PYTEST_ARGS) || rc=$$?; \
	if [[ $$rc -eq 5 ]]; then echo "make $@: no tests collected in tests/$* (none yet, or none selected)"; exit 0; fi; \
	exit $$rc

# The dashboard's browser test drives Debian's chromium (tests/e2e/test_dashboard_browser.py).
# Installed with apt-get when missing (root, as on CI); instant when it is there.
chromium:
	@scripts/ensure_chromium.sh

test-e2e: chromium

# Both checks run, so one pass shows every problem.
lint: venv
	@rc=0; \
	echo "$(BIN)/ruff check ."; $(BIN)/ruff check . || rc=1; \
	echo "$(BIN)/ruff format --check ."; $(BIN)/ruff format --check . || rc=1; \
	exit $$rc

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# pyproject.toml names the packages; bench/ and scripts/ are checked too.
typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy bench scripts

# The OpenAPI document (tollgate_local.openapi); tests/unit/test_openapi_document.py fails when stale.
openapi: venv
	PYTHONPATH=$(LOCAL_PYTHONPATH) $(BIN)/python -m tollgate_local.openapi

# Every benchmark, one table (docs/performance.md was made with BENCH_ARGS="--markdown docs/performance.md").
bench: venv
	PYTHONPATH=$(LOCAL_PYTHONPATH) $(BIN)/python bench/report.py $(BENCH_ARGS)
	PYTHONPATH=$(LOCAL_PYTHONPATH) $(BIN)/python bench/image_palette.py

sam-validate: sam-venv
	$(SAM_ENV) $(SAM) validate --lint

# sam build ships no bytecode and Lambda's /opt and /var/task are read-only, so every cold start
# would compile the layer from source (~0.7 s for a handler, see bench/). Compile it here, with
# hash-based .pyc that stay valid whatever mtimes the zip keeps.
sam-build: sam-venv venv
	$(SAM_ENV) $(SAM) build
	$(BIN)/python -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build
	$(BIN)/python scripts/check_sam_build.py .aws-sam/build

# checkov exits 0 on a template it could not parse, having checked nothing: that fails here.
# Suppressions live in each resource's Metadata (checkov: skip: id + comment), docs/security.md.
iac: iac-venv sam-venv
	@echo "$(CHECKOV) --framework cloudformation -f template.yaml --quiet --compact --skip-download"; \
	rc=0; out=$$($(CHECKOV_ENV) $(CHECKOV) --framework cloudformation -f template.yaml --quiet --compact \
		--skip-download 2>&1) || rc=$$?; \
	echo "$$out"; \
	if ! grep -q "Passed checks: [1-9]" <<<"$$out" || grep -q "Parsing errors: [1-9]" <<<"$$out"; then \
		echo "make iac: checkov could not check template.yaml" >&2; exit 1; \
	fi; \
	echo "$(SAM_VENV)/bin/cfn-lint template.yaml"; \
	$(SAM_VENV)/bin/cfn-lint template.yaml || rc=1; \
	exit $$rc

check: test lint typecheck sam-validate sam-build iac

clean:
	rm -rf .aws-sam build dist .pytest_cache .mypy_cache .ruff_cache test-artifacts
	find . -path ./.git -prune -o -path ./$(VENV) -prune -o -path ./$(SAM_VENV) -prune -o \
		-path ./$(IAC_VENV) -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) $(SAM_VENV) $(IAC_VENV) .tollgate
