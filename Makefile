# Stagecoach. `make run` serves the local control plane; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
AWS_PORT ?= 4566
NPM ?= npm
# Node tools pinned in package.json / package-lock.json, installed into ./node_modules (git-ignored).
ASL_VALIDATOR := node_modules/.bin/asl-validator
# Where the embedded state lives (empty: $STAGECOACH_STATE_DIR, else .stagecoach/ in the checkout);
# RESET=1 empties it first.
STATE_DIR ?=
RESET ?=

.PHONY: run test asl chromium statemachines bench package deploy clean

$(BIN)/.stagecoach-installed: pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -e '.[dev]'
	touch $@

$(ASL_VALIDATOR): package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	touch $@

# The embedded CloudFormation takes this long per change set and stack operation, and shows the previous
# status for CFN_STALE seconds after ExecuteChangeSet, as AWS can (docs/release-state-machine.md).
CFN_DELAY ?= 1
CFN_STALE ?= 0.5

run: $(BIN)/.stagecoach-installed
	STAGECOACH_EMULATOR_CFN_DELAY_SECONDS=$(CFN_DELAY) STAGECOACH_EMULATOR_CFN_STALE_SECONDS=$(CFN_STALE) \
	exec $(BIN)/python -m chalicelib.local.control_plane --port $(PORT) --aws-port $(AWS_PORT)$(if $(STATE_DIR), --state-dir '$(STATE_DIR)')$(if $(filter 1 yes true,$(RESET)), --reset)

test: $(BIN)/.stagecoach-installed asl chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

# The browser tests (tests/browser) drive Debian's Chromium: Playwright cannot download its own browser here.
# Installed when missing and running as root; otherwise one line names the package.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ]; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
		{ echo "make test needs the Debian package chromium; apt-get install -y chromium failed" >&2; exit 1; }; \
		echo "installed the Debian package chromium"; \
	else echo "make test needs the Debian package chromium: apt-get install -y chromium (as root)" >&2; exit 1; fi

# The release definition against the Amazon States Language spec (moto accepts some that AWS refuses).
asl: $(ASL_VALIDATOR)
	$(ASL_VALIDATOR) --json-path statemachines/release.asl.json

# statemachines/*.asl.json from their YAML sources (tests/unit/test_state_machine_source.py checks they match).
statemachines: $(BIN)/.stagecoach-installed
	$(BIN)/python statemachines/render.py

bench: $(BIN)/.stagecoach-installed
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/webhook.py
	$(BIN)/python bench/pipeline.py

package: $(BIN)/.stagecoach-installed
	deploy/deploy.sh package

deploy: $(BIN)/.stagecoach-installed
	deploy/deploy.sh

clean:
	rm -rf $(VENV) node_modules out .pytest_cache .mypy_cache .ruff_cache
