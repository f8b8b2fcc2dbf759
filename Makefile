# Developer and CI entry points. Every target brings what it needs (`make test` on a fresh machine
# installs the venv, resolves the jars and, as root, the PostgreSQL server package).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Stamps sit inside what they describe: deleting .venv or .cache/jars forces a reinstall.
VENV_STAMP := $(VENV)/.installed
JARS_STAMP := .cache/jars/.resolved
# The project's own Flink SQL functions (udfs/jvm), compiled against the pinned PyFlink's jars.
UDF_JAR := .cache/jars/udfs/micro-moments-udfs.jar
UDF_SOURCES := $(shell find udfs/jvm/src -name '*.java')
# PyFlink starts its Python workers with `python` from PATH: it must be the venv's.
RUN_PY := PATH="$(CURDIR)/$(BIN):$$PATH"

.PHONY: bench compose-config help setup postgres-server promtool chromium infra-up infra-down test test-unit lint demo clean-run clean

help:
	@echo "make setup       venv + pip install, JVM jars (Maven), PostgreSQL server, promtool, chromium if missing"
	@echo "make infra-up    start local Kafka (127.0.0.1:19092) and PostgreSQL (127.0.0.1:55432)"
	@echo "make infra-down  stop them"
	@echo "make test        the whole suite, unit and integration (fixtures start the services)"
	@echo "make test-unit   unit tests only (no JVM, no services)"
	@echo "make lint        ruff"
	@echo "make bench       benchmark vs the JVM-only ceiling (BENCH_ARGS=--quick)"
	@echo "make demo        the system live for a minute (DEMO_ARGS=\"--duration 30\")"
	@echo "make clean-run   stop the services and delete their state (.run/)"
	@echo "make clean       clean-run, and delete resolved jars (.cache/jars)"

setup: $(VENV_STAMP) $(JARS_STAMP) $(UDF_JAR) postgres-server promtool chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): pyproject.toml | $(BIN)/python
	@echo "setup: pip install -e '.[dev]'"
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]' >$(VENV)/pip.log 2>&1 || \
		{ cat $(VENV)/pip.log; exit 1; }
	@touch $@

# copy-dependencies never deletes, so empty the folders first: an old jar version must not linger.
$(JARS_STAMP): deploy/jars/pom.xml
	@echo "setup: resolving JVM jars (deploy/jars/pom.xml)"
	@rm -rf .cache/jars/flink .cache/jars/kafka && mkdir -p .cache/jars
	@mvn -B -q -f deploy/jars/pom.xml package >.cache/jars/mvn.log 2>&1 || \
		{ cat .cache/jars/mvn.log; exit 1; }
	@touch $@

$(UDF_JAR): $(UDF_SOURCES) $(VENV_STAMP)
	@echo "setup: compiling udfs/jvm"
	@lib="$$($(BIN)/python -c 'import pyflink, os; print(os.path.join(os.path.dirname(pyflink.__file__), "lib"))')"; \
		rm -rf .cache/jars/udfs && mkdir -p .cache/jars/udfs/classes && \
		javac --release 11 -Xlint:-options -cp "$$lib/*" -d .cache/jars/udfs/classes $(UDF_SOURCES) && \
		jar cf $@ -C .cache/jars/udfs/classes . && rm -rf .cache/jars/udfs/classes

postgres-server:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "setup: the PostgreSQL server is missing: run 'sudo apt-get install -y postgresql'" >&2; \
			exit 1; \
		fi; \
		echo "setup: apt-get install postgresql"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

# promtool checks and unit-tests deploy/monitoring's alert rules (Debian's prometheus package; the
# server itself is not started).
promtool:
	@if ! command -v promtool >/dev/null 2>&1; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "setup: promtool is missing: run 'sudo apt-get install -y prometheus'" >&2; \
			exit 1; \
		fi; \
		echo "setup: apt-get install prometheus (for promtool)"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	fi

# A headless browser renders `moments report --html` pages in the tests (Debian's chromium).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "setup: chromium is missing: run 'sudo apt-get install -y chromium'" >&2; \
			exit 1; \
		fi; \
		echo "setup: apt-get install chromium"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

infra-up: setup
	deploy/local/kafka.sh start
	deploy/local/postgres.sh start

infra-down:
	deploy/local/kafka.sh stop
	deploy/local/postgres.sh stop

# pytest's exit code 5 means "no tests collected": for CI that is a failure, not a pass.
test: setup
	@rc=0; $(RUN_PY) $(BIN)/pytest || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests collected" >&2; exit 1; fi; exit $$rc

test-unit: $(VENV_STAMP)
	@rc=0; $(RUN_PY) $(BIN)/pytest -m 'not integration' || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-unit: no tests collected" >&2; exit 1; fi; exit $$rc

lint: $(VENV_STAMP)
	$(BIN)/ruff check .

# The whole system for about a minute: local Kafka + PostgreSQL, detection and delivery jobs,
# local Braze/Iterable-compatible endpoints, a generated stream; stops what it started.
demo: setup
	@$(RUN_PY) $(BIN)/python deploy/local/demo.py $(DEMO_ARGS)

# Throughput vs the JVM-only ceiling, latency, timers, memory, correctness (bench/README.md).
bench: setup
	$(RUN_PY) $(BIN)/python bench/run.py $(BENCH_ARGS)

# Validates the compose file without a Docker engine (Debian's docker-compose package).
compose-config:
	docker-compose -f docker-compose.yml --profile generate config -q

# .run/postgres may be a symlink to /tmp (see deploy/local/postgres.sh): delete its target too.
clean-run: infra-down
	@if [ -L .run/postgres ]; then rm -rf "$$(readlink .run/postgres)"; fi
	rm -rf .run

clean: clean-run
	rm -rf .cache/jars
