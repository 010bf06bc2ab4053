# Two commands: `make demo` (install + the default MEI run) and `make test` (lint, types, tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the reference PROTES (JAX) pins numpy < 2.0.2: it gets an environment of its own
REF ?= .venv-reference
REF_STAMP := $(REF)/.installed

.PHONY: demo test test-reference lint install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the pinned torch (a CUDA build, 6 GB) is taken from this disk; other versions download GBs
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[test,distributed]"
	touch $(STAMP)

# it shares .venv's packages (torch alone is 6 GB) through a .pth file that puts them after its own
# site-packages, so only what the pins change (numpy, pandas, ...) and jax/protes are installed into it
$(REF_STAMP): $(STAMP) pyproject.toml
	python3 -m venv $(REF)
	$(REF)/bin/python -m pip install -q --upgrade pip
	$(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
	    > "$$($(REF)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/mango-shared-venv.pth"
	$(REF)/bin/python -m pip install -q -e ".[test,reference]"
	touch $(REF_STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mango run --out runs/demo-$$(date +%Y%m%d-%H%M%S)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q --ignore=tests/test_protes_reference.py
	$(MAKE) test-reference

# our torch PROTES against the reference package, in its own environment
test-reference: $(REF_STAMP)
	$(REF)/bin/python -m pytest -q tests/test_protes_reference.py

clean:
	rm -rf $(VENV) $(REF) runs .pytest_cache .mypy_cache .ruff_cache
