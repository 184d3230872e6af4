# Stagecoach. `make run` serves the local control plane; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
AWS_PORT ?= 4566
# Where the embedded state lives (empty: $STAGECOACH_STATE_DIR, else .stagecoach/ in the checkout).
STATE_DIR ?=

.PHONY: run test bench package deploy clean

$(BIN)/.stagecoach-installed: pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e '.[dev]'
	touch $@

run: $(BIN)/.stagecoach-installed
	exec $(BIN)/python -m chalicelib.local.control_plane --port $(PORT) --aws-port $(AWS_PORT)$(if $(STATE_DIR), --state-dir '$(STATE_DIR)')

test: $(BIN)/.stagecoach-installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(BIN)/.stagecoach-installed
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/pipeline.py

package: $(BIN)/.stagecoach-installed
	deploy/deploy.sh package

deploy: $(BIN)/.stagecoach-installed
	deploy/deploy.sh

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
