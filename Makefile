# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The database tests also run on PostgreSQL; set TEST_POSTGRES_URL= (empty) to run on SQLite only.
TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export TEST_POSTGRES_URL

.PHONY: demo test setup lock lint typecheck pytest migrate bench soak clean chromium

# The dependencies come from the lock file (exact versions and hashes, `make lock` refreshes it), the
# project itself without them; then the matcher's model is trained once into its cache, so the first
# `calsync match` starts as fast as every later one.
LOCK := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet -e . --no-deps
	$(BIN)/calsync match < /dev/null
	touch $(STAMP)

setup: $(STAMP)

# Re-resolve pyproject.toml's dependencies (with the dev extra) into the lock; keeps the pins it can,
# LOCK_FLAGS=--upgrade takes the newest allowed versions.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); $(BIN)/python -m pip install --quiet uv && $(BIN)/uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 --quiet $(LOCK_FLAGS) -o $(LOCK)

migrate: setup
	$(BIN)/calsync db upgrade

demo: migrate
	$(BIN)/calsync demo

lint: setup
	$(BIN)/ruff check calsync tests benchmarks
	$(BIN)/ruff format --check calsync tests benchmarks

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

# The browser tests drive Debian's Chromium (never Playwright's own browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo sudo)
chromium:
	command -v chromium >/dev/null || ($(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update \
	  && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium)

test: lint typecheck chromium pytest

bench: setup
	$(BIN)/python benchmarks/matcher_bench.py
	$(BIN)/python benchmarks/route_bench.py
	$(BIN)/python benchmarks/answer_size_bench.py
	$(BIN)/python benchmarks/diagnosis_bench.py
	$(BIN)/python benchmarks/duplicates_bench.py
	$(BIN)/python benchmarks/ack_bench.py
	$(BIN)/python benchmarks/memory_bench.py
	$(BIN)/python benchmarks/sweep_bench.py
	$(BIN)/python benchmarks/oversize_bench.py
	$(BIN)/python benchmarks/start_bench.py
	$(BIN)/python benchmarks/fleet_bench.py
	$(BIN)/python benchmarks/incidents_bench.py

# 500 questions with Slack's retries to two instances on one PostgreSQL database while the providers
# throttle and fail; exits non-zero if an answer is lost or doubled. PostgreSQL: TEST_POSTGRES_URL.
soak: setup
	$(BIN)/python benchmarks/soak.py

clean:
	rm -rf $(VENV) .calsync .pytest_cache .mypy_cache .ruff_cache
