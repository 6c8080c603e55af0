# `make demo` and `make test` work on a fresh machine: each creates .venv and
# installs kerasllm (with what it needs) first, once.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo lifecycle test test-fast clean

$(STAMP): setup.py tools/system-packages.txt
	sh tools/install-system-packages.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,jax,export,serve]"
	touch $(STAMP)

install: $(STAMP)

# Pretrain the tiny config on the built-in corpus, sample, evaluate, export.
demo: $(STAMP)
	$(PY) recipes/demo.py

# Every stage of the tiny model's life, corpus to a served version N+1 (about 10 min on 2 idle cores):
# a table of each stage's figures and outputs, also in runs/lifecycle/lifecycle.json.
lifecycle: $(STAMP)
	$(PY) recipes/lifecycle.py --output runs/lifecycle

# Every test on the TensorFlow backend (slow ones included), then the
# backend-agnostic packages again on JAX. Test files run in parallel, one
# worker per core (at most 4; each file stays on one worker, so its
# fixtures are built once).
PARALLEL := -n auto --maxprocesses 4 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest -q $(PARALLEL) --durations=25 tests
	KERAS_BACKEND=jax $(PY) -m pytest -q $(PARALLEL) -m "not tf_only" tests/layers tests/models tests/training tests/generation tests/alignment/test_losses.py

# Skip the tests marked slow.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
