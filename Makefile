# Set-up and the two everyday commands. `make demo` and `make test` each create the virtual
# environment on first use, so either is the only command a fresh clone needs.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

# torch: a CPU-only machine gets the CPU build. Where a local CPU wheel lies in /opt/wheels it
# is used (no download); otherwise PyTorch's CPU index. A GPU user installs a CUDA build into
# the venv first (see README) and this step keeps it.
ifneq ($(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl),)
TORCH_INSTALL ?= torch==2.13.0 --find-links /opt/wheels
else
TORCH_INSTALL ?= torch --index-url https://download.pytorch.org/whl/cpu
endif

.PHONY: install demo test test-fast lint clean

$(BIN)/.installed: pyproject.toml plugins/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet $(TORCH_INSTALL)
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(addprefix -e ,$(wildcard plugins/*/))
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/ganpipe run

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# The edit loop: no training, no browser (README's `make test` still runs everything).
test-fast: $(BIN)/.installed
	GANPIPE_TEST_FAST=1 $(BIN)/python -m pytest -m "not slow and not browser" -q

lint: $(BIN)/.installed
	$(BIN)/ruff check ganpipe flows plugins tests benchmarks
	$(BIN)/ruff format --check ganpipe flows plugins tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) ganpipe-runs .pytest_cache
