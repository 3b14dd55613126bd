# Two entry points on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the project into it; nothing else is assumed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch for the reference/training extras. Override on machines
# where another build is wanted, e.g. TORCH_SPEC='torch' make test.
TORCH_SPEC ?= torch==2.13.0
# Expanded once (":="): a recursive "?=" drew a new seed at every use, so the seed the
# test line printed was not the one the run used.
ifndef SEED
SEED := $(shell $(PYTHON) -c "import random; print(random.randrange(1 << 16))")
endif
JOBS ?= 2

STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,reference,plot]"
	touch $(STAMP)

# End-to-end generation with the shipped model, the whole decode step on the RTL (the
# ULX3S device with its vector machine on the simulated board: the host sends the prompt
# and gets token ids back); the summary projects the run to the ULX3S.
demo: $(STAMP)
	$(BIN)/ternary generate --backend sim --board ulx3s-85f --offload model --tokens 96 --prompt "ROMEO:"

test: $(STAMP)
	@echo "test seed: $(SEED) (repeat with SEED=$(SEED) make test)"
	TERNARY_TEST_SEED=$(SEED) $(BIN)/python -m pytest -n $(JOBS) --hypothesis-seed=$(SEED) -ra --durations=20 tests

clean:
	rm -rf $(VENV) build sim_build .pytest_cache .hypothesis
