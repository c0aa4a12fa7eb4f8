# Two commands for users: `make run` and `make test`. Each creates .venv when
# missing and installs the pinned requirements first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test conformance soak bench lint format screenshot system-packages clean

run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py

test: $(VENV)/.dev system-packages
	$(BIN)/pytest

# Autobahn|Testsuite cases via kosoku; report in reports/conformance/.
conformance: $(VENV)/.dev
	$(BIN)/python -m conformance.run

# Leaks, memory given back after bursts, a 20 s greedy client; fails on any miss.
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak

# This server against python websockets and a raw TCP echo; bench/results.md.
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run

# The browser, proxy and TLS tests use Debian's chromium, nginx and openssl.
system-packages:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/bin/openssl ] || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing"; apt-get update && apt-get install -y $$missing; fi

# docs/console.png, taken by the browser test from a real session.
screenshot: $(VENV)/.dev system-packages
	ECHO_SCREENSHOT=docs/console.png $(BIN)/pytest -q tests/test_console.py -k probes_are_summarised

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Debian's python3 has no venv module until python3-venv is installed.
$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "Installing python3-venv (Debian splits venv out of python3)"; \
	  apt-get update && apt-get install -y python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
