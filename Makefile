# Two commands on a fresh machine: `make demo` (install + run the pipeline), `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: demo test lint bench-lake bench-drift bench-train browser

$(BIN)/tideline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/tideline
	$(BIN)/tideline run

# The UI test drives Debian's Chromium through chromedriver; install them when missing (root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "could not install chromium and chromium-driver: the Prefect UI test will not run" >&2; }

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: $(BIN)/tideline browser
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

lint: $(BIN)/tideline
	$(BIN)/ruff check .

bench-lake: $(BIN)/tideline
	$(BIN)/python benchmarks/lake_bench.py

# psutil (peak memory of the process tree) comes with the bench extra
bench-drift: $(BIN)/tideline
	$(BIN)/python -c 'import psutil' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/drift_bench.py

# tideline's training overhead over plain LightGBM; on a shared machine add ARGS='--threads 1'
bench-train: $(BIN)/tideline
	$(BIN)/python -c 'import psutil' 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/train_bench.py $(ARGS)
