# Two commands do all set-up on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed

# Editable installs of the core, the first-party plugins and the example plugin.
PACKAGES := -e . -e plugins/doppelkit-slack -e plugins/doppelkit-lora -e examples/doppelkit-jsonl

.PHONY: demo test lint typecheck bench install clean

$(STAMP): pyproject.toml constraints.txt plugins/*/pyproject.toml examples/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: nothing later may pull a CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt $(PACKAGES) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/doppelkit persona.user=$${DEMO_PERSONA:-maya} home=$${DOPPELKIT_HOME:-.doppelkit-demo}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pytest benchmarks -q --benchmark-enable -p no:cacheprovider

clean:
	rm -rf $(VENV) build dist .doppelkit-demo
