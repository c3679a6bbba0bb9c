# Two commands on a fresh machine: `make demo` (install + run the pipeline), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: demo test test-slow test-cluster lint bench-smoke bench-lake bench-drift bench-train system

$(BIN)/tideline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

# the bundled demo as a project of its own, in ./tideline-demo, run end to end
demo: $(BIN)/tideline
	$(BIN)/tideline demo

# What the suite runs for real, from Debian's packages (installed when missing; root): Chromium
# and chromedriver for the Prefect UI test; PostgreSQL, Redis and NATS JetStream, which the suite
# starts as private servers on free ports. And a real lakeFS, built once per machine from its Go
# module (tools/lakefs.sh; without Go only the real-lakeFS tests skip, and fail under CI=true).
system:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v nats-server >/dev/null || test -x /usr/sbin/nats-server || missing="$$missing nats-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $$missing >/dev/null 2>&1; } || \
	  echo "could not install$$missing: the tests that need them skip (and fail under CI=true)" >&2; \
	fi
	@bash tools/lakefs.sh build >/dev/null || test $$? -eq 3

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
define pytest
	@$(BIN)/python -m pytest $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc
endef

# Everything but the end-to-end scenarios (marked slow), which `make test-slow` runs; CI runs both.
# The benchmarks' quick smoke runs (tests/benchmarks) are part of it; the slower ones are marked
# slow and run with `make test-slow`.
test: $(BIN)/tideline system
	$(call pytest,-m "not slow and not cluster")

# every benchmark at a small size, checking that tideline agrees with its references (never
# timing them), slow ones included; results go to benchmarks/out/, which git ignores
bench-smoke: $(BIN)/tideline system
	$(call pytest,tests/benchmarks)

test-slow: $(BIN)/tideline system
	$(call pytest,-m "slow and not cluster")

# The deployment across hosts (tests/cluster, docs/deployment.md): lake, head, w1 and w2 as
# network namespaces on this machine (root and iproute2), the pipeline started through the
# Prefect API, then a killed worker, a lakeFS restart and an unplugged worker host. 9-15
# minutes on 2 cores.
test-cluster: $(BIN)/tideline system
	$(call pytest,-m cluster -v -s tests/cluster)

lint: $(BIN)/tideline
	$(BIN)/ruff check .

bench-lake: $(BIN)/tideline
	$(BIN)/python benchmarks/lake_bench.py

bench-drift: $(BIN)/tideline
	$(BIN)/python benchmarks/drift_bench.py

# tideline's training overhead over plain LightGBM, both on the same cores (ARGS='--threads N')
bench-train: $(BIN)/tideline
	$(BIN)/python benchmarks/train_bench.py $(ARGS)
