# queuekit: `make demo` and `make test` set themselves up from nothing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck imports unit bench bench-cluster soak redis-server chromium clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "queuekit needs Python 3.11 or newer ($(PYTHON) is older)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## The test suite starts its own redis-server; install the binary where it is missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server; }
	@command -v redis-server >/dev/null 2>&1 || { echo "redis-server is still missing"; exit 1; }

## The dashboard's browser tests drive Debian's chromium (Playwright never downloads one).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is still missing"; exit 1; }

demo: $(STAMP)
	$(BIN)/queuekit demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

## The architecture's rules (layers, who may import bullmq ...), from pyproject.toml.
imports: $(STAMP)
	$(BIN)/lint-imports --no-cache

test: $(STAMP) redis-server chromium lint typecheck imports
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=90 $(PYTEST_ARGS)

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

bench: $(STAMP) redis-server
	$(BIN)/python benchmarks/run.py $(ARGS)

## The chaos soak: 50,000 jobs from Python and Node producers, workers SIGKILLed, Redis
## restarted; prints one summary line (ARGS="--jobs 5000" for a short one).
soak: $(STAMP) redis-server
	$(BIN)/python -m tests.soak $(ARGS)

## Redis CPU per job per shard on a 3-shard loopback cluster (docs/benchmarks-cluster.md).
bench-cluster: $(STAMP) redis-server
	$(BIN)/python -m benchmarks.cluster $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
