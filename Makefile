# Two commands do all the set-up on a fresh machine (see README.md):
#   make demo   -- create .venv, install curate (CPU torch), run the demo on the bundled sample
#   make test   -- the same set-up, then the whole test suite
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q "$(TORCH)"
	$(VENV)/bin/python -m pip install -q -e '.[dev,ray,multilingual]'
	touch $@

.PHONY: install demo test
install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/curate demo --out out/demo

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q
