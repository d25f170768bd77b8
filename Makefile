# serouter — one command to run, one to test. Everything it needs is installed from here.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
CONFIG ?=
# Debian packages the tests need (installed with apt-get when missing; CI runs as root).
APT_PACKAGES ?= libsepol2 libselinux1 libaudit1 secilc checkpolicy semodule-utils policycoreutils policycoreutils-python-utils selinux-policy-dev selinux-policy-default setools xenstore-utils

.PHONY: run test lint bench policy venv apt-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## run: start the router (embedded default config unless CONFIG=path)
run: $(STAMP)
	$(VENV)/bin/serouter run $(if $(CONFIG),-c $(CONFIG))

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

## test: install what the tests need and run them
test: $(STAMP) apt-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

## lint: ruff and mypy (strict on the package)
lint: $(STAMP)
	$(VENV)/bin/ruff check serouter tests bench
	$(VENV)/bin/mypy

## bench: start a router on one core and drive it from the other (see bench/README.md)
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## policy: build the SELinux policy module (policy/: wamp.cil classes + serouter.pp)
policy: apt-deps
	$(MAKE) -C policy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
