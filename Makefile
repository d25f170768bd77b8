# serouter — one command to run, one to test. Everything it needs is installed from here.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
CONFIG ?=
# Debian packages the tests need (installed with apt-get when missing; CI runs as root).
APT_PACKAGES ?= systemd libsepol2 libselinux1 libaudit1 secilc checkpolicy semodule-utils policycoreutils policycoreutils-python-utils selinux-policy-dev selinux-policy-default setools xenstore-utils iproute2 gcc libc6-dev

.PHONY: run test test-kernel lint bench policy venv apt-deps clean fuzz soak install uninstall dist

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

## test-kernel: only the VM test of the selinux backend on a live SELinux kernel (qemu; also
## part of `make test`; docs/selinux.md, "Testing against a live SELinux kernel")
test-kernel: $(STAMP) apt-deps
	$(PY) -m pytest -q tests/test_kernel_selinux.py $(PYTEST_ARGS)

## lint: ruff and mypy (strict on the package)
lint: $(STAMP)
	$(VENV)/bin/ruff check serouter tests bench
	$(VENV)/bin/mypy

## bench: start a router on one core and drive it from the other (see bench/README.md)
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## fuzz: the long fuzz run, 1,000,000 messages per target (FUZZ_ARGS="--inputs N --targets ...")
fuzz: $(STAMP)
	$(PY) -m tests.fuzz $(FUZZ_ARGS)

## soak: one hour of mixed RPC/PubSub load with churn, router RSS sampled (SOAK_ARGS="--duration S")
soak: $(STAMP)
	$(PY) -m tests.soak $(SOAK_ARGS)

## policy: build the SELinux policy module (policy/: wamp.cil classes + serouter.pp)
policy: apt-deps
	$(MAKE) -C policy

# -- install and dist (docs/operations.md) ------------------------------------------------------
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib/serouter
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DATADIR    ?= $(PREFIX)/share/serouter
DOCDIR     ?= $(PREFIX)/share/doc/serouter
SYSCONFDIR ?= /etc
# what the installed command and the zipapp run with: the system's Python 3.11, nothing else
SYSTEM_PYTHON ?= /usr/bin/python3.11
SOURCES := pyproject.toml README.md $(shell find serouter twisted/plugins -name '*.py')
WHEELS   = build/wheels/.stamp
WHEEL    = build/wheel/.stamp
STAGE    = build/stage/.stamp
ETC      = $(DESTDIR)$(SYSCONFDIR)/serouter
LIBREL   = $(shell $(PYTHON) -c 'import os, sys; print(os.path.relpath(*sys.argv[1:]))' $(LIBDIR) $(BINDIR))

# every dependency as a wheel (CPython 3.11, manylinux), fetched again only when they change
$(WHEELS): pyproject.toml | $(STAMP)
	rm -rf build/wheels
	$(PY) -m pip wheel -q -w build/wheels .
	rm -f build/wheels/serouter-*.whl
	touch $@

$(WHEEL): $(SOURCES) | $(STAMP)
	rm -rf build/wheel
	$(PY) -m pip wheel -q --no-deps -w build/wheel .
	touch $@

# the package and its dependencies in one directory: what install copies and dist zips
$(STAGE): $(WHEELS) $(WHEEL)
	rm -rf build/stage
	$(PY) -m pip install -q --no-index --find-links build/wheels --no-compile \
	  --target build/stage/lib build/wheel/serouter-*.whl
	rm -rf build/stage/lib/bin
	touch $@

## dist: dist/serouter.pyz, one file that runs with the system's Python 3.11 and nothing else
dist: dist/serouter.pyz

dist/serouter.pyz: $(STAGE)
	mkdir -p dist
	$(VENV)/bin/shiv --site-packages build/stage/lib -e serouter.cli:main \
	  -p '$(SYSTEM_PYTHON) -I' --reproducible -o $@.tmp
	mv $@.tmp $@

## install: DESTDIR=... PREFIX=... (default /usr/local): the command and its package, the units,
## /etc/serouter (files already there are kept), the policy sources and the docs
install: $(STAGE)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(ETC) \
	  $(DESTDIR)$(DATADIR)/policy $(DESTDIR)$(DOCDIR) $(dir $(DESTDIR)$(LIBDIR))
	rm -rf $(DESTDIR)$(LIBDIR).new $(DESTDIR)$(LIBDIR).old
	cp -R build/stage/lib $(DESTDIR)$(LIBDIR).new
	$(PY) -m compileall -q -j0 -d $(LIBDIR) $(DESTDIR)$(LIBDIR).new
	# Twisted's plugin cache (endpoint parsers), written now: the service cannot write there
	$(PY) -I -c 'import sys; sys.path.insert(0, sys.argv[1]); from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))' $(DESTDIR)$(LIBDIR).new
	if [ -e $(DESTDIR)$(LIBDIR) ]; then mv $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBDIR).old; fi
	mv $(DESTDIR)$(LIBDIR).new $(DESTDIR)$(LIBDIR)
	rm -rf $(DESTDIR)$(LIBDIR).old
	printf '%s\n' '#!$(SYSTEM_PYTHON) -I' \
	  '"""serouter (make install): its package and dependencies are in $(LIBDIR)."""' \
	  'import os, sys' \
	  'sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "$(LIBREL)"))' \
	  'from serouter.cli import main' 'sys.exit(main())' > $(DESTDIR)$(BINDIR)/serouter
	chmod 755 $(DESTDIR)$(BINDIR)/serouter
	for unit in serouter.service serouter-nameserver.service serouter.socket; do \
	  sed -e 's|/usr/bin/serouter|$(BINDIR)/serouter|g' -e 's|/etc/serouter|$(SYSCONFDIR)/serouter|g' \
	      -e 's|/usr/share/doc/serouter|$(DOCDIR)|g' systemd/$$unit > $(DESTDIR)$(UNITDIR)/$$unit; \
	  chmod 644 $(DESTDIR)$(UNITDIR)/$$unit; done
	[ -e $(ETC)/serouter.toml ] || install -m 644 systemd/serouter.toml $(ETC)/serouter.toml
	[ -e $(ETC)/nameserver.toml ] || install -m 644 systemd/serouter-nameserver.toml $(ETC)/nameserver.toml
	[ -e $(ETC)/wamp_contexts ] || install -m 644 policy/wamp_contexts $(ETC)/wamp_contexts
	install -m 644 policy/wamp.cil policy/serouter.te policy/serouter.if policy/serouter.fc \
	  policy/Makefile $(DESTDIR)$(DATADIR)/policy/
	install -m 644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/

## uninstall: remove what install put in place, except /etc/serouter
uninstall:
	rm -rf $(DESTDIR)$(BINDIR)/serouter $(DESTDIR)$(LIBDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,serouter.service serouter-nameserver.service serouter.socket)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build/wheels build/wheel build/stage
