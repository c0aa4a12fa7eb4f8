# Two commands for users: `make run` and `make test`. Each creates .venv when
# missing and installs the pinned requirements first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# PYTHON given on the command line or in the environment, and not the Python
# .venv was made with: .venv is made anew (make test PYTHON=python3.13).
ifneq ($(filter command line environment,$(origin PYTHON)),)
ifneq ($(wildcard $(BIN)/python),)
python_version = $(shell $(1) -c 'import sys; print(sys.version)')
ifneq ($(call python_version,$(PYTHON)),$(call python_version,$(BIN)/python))
$(info PYTHON=$(PYTHON) is not the Python of .venv: making .venv anew)
$(shell rm -rf $(VENV))
endif
endif
endif

.PHONY: run test conformance soak bench bench-pinned instructions instructions-scaling valgrind wheelhouse lint format screenshot system-packages clean

run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py

# gunicorn reads WEB_CONCURRENCY as it starts, before gunicorn.conf.py, and
# a value that is not a number is a traceback there: say it in one line here.
digits_removed = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst \
  6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
ifneq ($(filter run,$(or $(MAKECMDGOALS),run)),)
ifneq ($(origin WEB_CONCURRENCY),undefined)
ifneq ($(call digits_removed,$(WEB_CONCURRENCY))$(if $(subst 0,,$(WEB_CONCURRENCY)),,0),)
$(error WEB_CONCURRENCY = '$(WEB_CONCURRENCY)': must be a number of workers >= 1)
endif
endif
endif

test: $(VENV)/.dev system-packages
	$(BIN)/pytest

# Autobahn|Testsuite cases via kosoku; report in reports/conformance/.
conformance: $(VENV)/.dev
	$(BIN)/python -m conformance.run

# Leaks, memory given back after bursts, a 20 s greedy client; fails on any miss.
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak

# This server against python websockets and a raw TCP echo; reports/bench/results.md.
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run

# Server CPU per handshake and per round trip with the server alone on a core
# (against aiohttp, picows and the gevent floor), then CPU per handshake over
# 1, 2, 4, ... workers; reports/bench/pinned.md. BEFORE=DIR adds another checkout.
bench-pinned: $(VENV)/.dev
	$(BIN)/python -m bench.pinned $(if $(BEFORE),--before $(BEFORE))

# Wheels of every pinned requirement (and pip) for a machine that reaches no
# registry, such as one lent for a scaling run; there, with this clone:
#   PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/wheelhouse make bench-pinned PYTHON=python3.12
WHEEL_PYTHON ?= 3.12
WHEEL_ARCH ?= x86_64
wheelhouse: $(VENV)/.dev
	$(BIN)/pip download --quiet --only-binary=:all: --implementation cp \
	  --python-version $(WHEEL_PYTHON) $(foreach tag,manylinux2014 manylinux_2_17 \
	  manylinux_2_28 manylinux_2_34,--platform $(tag)_$(WHEEL_ARCH)) \
	  -r requirements-dev.txt pip -d wheelhouse

# Instructions per handshake and per round trip, this server against the gevent
# floor and aiohttp, counted by valgrind (repeatable on a busy machine); about 4 minutes.
instructions: $(VENV)/.dev valgrind
	$(BIN)/python -m bench.instructions

# Instructions per handshake in 1, 2 and 4 processes, this server and the floor; about 5 minutes.
instructions-scaling: $(VENV)/.dev valgrind
	$(BIN)/python -m bench.instructions --scaling

valgrind:
	@command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)

# The browser, proxy and TLS tests use Debian's chromium, nginx and openssl;
# the systemd unit is checked by systemd-analyze.
# The tests run nginx themselves: the package's own service (port 80) is kept
# from starting, now (policy-rc.d, for the install only) and at boot.
system-packages:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	[ -x /usr/bin/openssl ] || missing="$$missing openssl"; \
	[ -x /usr/bin/systemd-analyze ] || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing"; \
	  guard=""; \
	  if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
	      && guard=yes; \
	  fi; \
	  apt-get update && apt-get install -y $$missing; status=$$?; \
	  [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; \
	  case "$$missing" in *nginx*) \
	    if command -v systemctl >/dev/null; then systemctl disable nginx 2>/dev/null || true; fi;; \
	  esac; \
	  exit $$status; \
	fi

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
