# Two commands do all set-up on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed

# Editable installs of the core, the first-party plugins and the example plugin.
PACKAGES := -e . -e plugins/doppelkit-slack -e plugins/doppelkit-lora -e plugins/doppelkit-modal -e examples/doppelkit-jsonl

.PHONY: demo test lint typecheck bench install clean

$(STAMP): pyproject.toml constraints.txt plugins/*/pyproject.toml examples/*/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: nothing later may pull a CUDA build.
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt $(PACKAGES) -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

DEMO_HOME    ?= .doppelkit-demo
DEMO_PERSONA ?= maya

# The main job on the embedded default: the bundled sample workspace, the tiny model, CPU.
# Then a few lines piped into the terminal chat to show the trained persona answering.
demo: $(STAMP)
	$(BIN)/doppelkit persona.user=$(DEMO_PERSONA) home=$(DEMO_HOME)
	printf '%s\n' "hey, how is the billing page coming along?" \
	  "anyone up for lunch today?" "can you review my PR before the deploy?" \
	  | $(BIN)/doppelkit chat persona.user=$(DEMO_PERSONA) home=$(DEMO_HOME)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/pytest benchmarks -q -s --benchmark-enable -p no:cacheprovider
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build dist .doppelkit-demo
