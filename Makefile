# Two commands for a new user: `make demo` and `make test`. Each builds .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: demo test check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
# Compile the domain words into Sudachi's user dictionary (about 3 s) and fit the learned
# scores (2–3 s) now, both cached, so the bot's first start is as fast as every other.
	$(PY) -c 'from bot.app import build_retriever; from bot.settings import Settings; build_retriever(Settings())'
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
