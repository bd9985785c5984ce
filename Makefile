# One line per target; the README shows the same commands.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint fmt bench ingest clean

# Keyed on pytest, not gridpulse: the quick start's venv has gridpulse without the dev tools.
$(VENV)/bin/pytest: pyproject.toml
	python3 -m venv $(VENV) && $(VENV)/bin/pip install -q -e '.[dev]' && touch $@

install: $(VENV)/bin/pytest

test: install
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check gridpulse_cli tests testing bench && $(VENV)/bin/ruff format --check gridpulse_cli && $(VENV)/bin/mypy

fmt: install
	$(VENV)/bin/ruff format gridpulse_cli tests testing bench && $(VENV)/bin/ruff check --fix gridpulse_cli tests testing bench

bench: install
	$(PY) -m bench.run

ingest: install
	$(VENV)/bin/gridpulse ingest --since 24h

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
