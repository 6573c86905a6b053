# cowdns — every set-up step lives here, so a fresh machine needs only `make run` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed

# Debian packages the tests use: package:binary
TEST_DEBS := bind9-dnsutils:dig etcd-server:etcd dnsperf:dnsperf

.PHONY: run test lint venv debs clean bench bench-peers

$(VENV)/bin/python:
	@$(PYTHON) -m venv $(VENV) || { echo "cowdns: '$(PYTHON) -m venv' failed; on Debian: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip

# What serving needs.
$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

# What tests, linters and benchmarks need on top.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_STAMP)

venv: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/cowdns serve --config examples/cowdns.toml

debs:
	@missing=""; for pair in $(TEST_DEBS); do \
	  command -v "$${pair#*:}" >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "cowdns tests need these Debian packages, please install them:$$missing"; exit 1; \
	  fi; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check cowdns tests bench
	$(VENV)/bin/ruff format --check cowdns tests bench
	$(VENV)/bin/mypy cowdns tests bench
	$(VENV)/bin/cowdns lockcheck --quiet cowdns

test: $(STAMP) debs lint
	$(PY) -m pytest

# Locked vs copy-on-write under load; see bench/README.md (e.g. BENCH_ARGS="--duration 20").
bench: $(STAMP) debs
	$(PY) -m bench $(BENCH_ARGS)

# Max qps of cowdns against NSD, Knot (Debian packages, installed here like dnsperf) and
# Twisted Names (pip-installed into the venv by the bench when missing); see bench/README.md.
bench-peers: $(STAMP) debs
	@$(MAKE) --no-print-directory debs TEST_DEBS="nsd:nsd knot:knotd"
	$(PY) -m bench --scenarios peers --out bench/results/peers $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
