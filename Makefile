# shopflow: `make demo` (set up + run the pipeline on the real sample data), `make test` (all tests), `make ui`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export SHOPFLOW_HOME ?= $(CURDIR)/.shopflow
export SHOPFLOW_SOURCE_DATA ?= $(abspath $(CURDIR)/../shared/data)
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
export AIRFLOW__CORE__PARALLELISM ?= 4
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/scripts
# SQLite: wait for locks instead of failing after 5 s (scripts/airflow_sqlite.py)
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS ?= airflow_sqlite.CONNECT_ARGS

.PHONY: demo test lint ui venv bench clean-demo print-env system-packages

$(BIN)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/python scripts/demo.py

# PostgreSQL server, redis-server and chromium for the tests: installed where this machine allows it, else the
# tests that need them are skipped with the package's name (scripts/system_packages.sh).
system-packages:
	@bash scripts/system_packages.sh

# Two pytest-xdist workers: much of the suite waits on Airflow, PostgreSQL and subprocesses. Tests that share an
# expensive session fixture run on one worker (tests/conftest.py, SHARED_FIXTURE_MODULES). PYTEST_WORKERS=0: one process.
PYTEST_WORKERS ?= 2
test: venv system-packages
	$(BIN)/python -m pytest -q -ra -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

# ruff, then the architecture contract: the library's layers, no cycles, no Airflow in include/ ([tool.importlinter])
lint: venv
	$(BIN)/ruff check include plugins dags scripts tests bench
	PYTHONPATH=include $(BIN)/lint-imports
	$(BIN)/python scripts/check_layers.py

ui: venv
	@echo "Airflow UI on http://127.0.0.1:8080 (user admin, password in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated); Ctrl-C stops it"
	PATH=$(CURDIR)/$(BIN):$$PATH AIRFLOW__CORE__PARALLELISM=4 AIRFLOW__API__PORT=8080 exec $(BIN)/airflow standalone

bench: venv
	$(BIN)/python bench/pipeline.py

clean-demo:
	rm -rf .airflow .shopflow

print-env:
	@echo "export AIRFLOW_HOME=$(AIRFLOW_HOME) SHOPFLOW_HOME=$(SHOPFLOW_HOME) SHOPFLOW_SOURCE_DATA=$(SHOPFLOW_SOURCE_DATA)"
	@echo "export AIRFLOW__CORE__DAGS_FOLDER=$(AIRFLOW__CORE__DAGS_FOLDER) AIRFLOW__CORE__PLUGINS_FOLDER=$(AIRFLOW__CORE__PLUGINS_FOLDER)"
	@echo "export AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__EXECUTOR=LocalExecutor PYTHONPATH=$(PYTHONPATH)"
