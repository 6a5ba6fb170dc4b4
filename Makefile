# Two commands for a new user: `make demo` and `make test`. Each builds .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	$(PY) main.py demo

test: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

check: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) main.py kb check

clean:
	rm -rf $(VENV) var
