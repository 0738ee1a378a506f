# Two entry points do all the set-up on a fresh machine:
#   make demo   -> the main job: sandbox up, last 24 h, summary + HTML report
#   make test   -> every test tier (unit, integration against the sandbox, browser)
# Everything is installed into .venv; the broker/registry jars go to the user's cache.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: native setup jars browser demo test test-unit lint bench sandbox-down clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,spark]'
	touch $(STAMP)

# The Avro transcoder (native/, Rust): built where cargo exists, cached in ~/.cache.
native: $(STAMP)
	bash scripts/build-native

setup: $(STAMP) native

jars: setup
	$(BIN)/tu-analytics sandbox fetch

browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || scripts/install-chromium

demo: jars
	$(BIN)/tu-analytics demo $(DEMO_ARGS)

test: jars browser
	bash scripts/run-tests

test-unit: setup
	$(BIN)/pytest tests/unit -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: jars
	$(BIN)/python benchmarks/run_all.py

sandbox-down: setup
	$(BIN)/tu-analytics sandbox down

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
