# AutoPilot: the two commands of the README, and their helpers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv stop lint

$(STAMP): setup.py constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev,rucio]' \
		|| { echo "make: installing AutoPilot into $(VENV) failed (step: pip install -c constraints.txt -e .[dev,rucio])" >&2; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/autopilot up

# Stopping needs no (re)install: without the venv, nothing of ours can be running.
stop:
	@if [ -x $(BIN)/autopilot ]; then $(BIN)/autopilot down; else echo "make stop: $(VENV) is not installed, nothing to stop"; fi

test: $(STAMP)
	scripts/slurm-local.sh start
	scripts/condor-local.sh start
	scripts/arc-local.sh start
	scripts/arc7-local.sh start
	scripts/rucio-local.sh start
	scripts/browser-deps.sh
	scripts/redis-deps.sh
	$(BIN)/ruff check autopilot_ops dags plugins tests bench
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check autopilot_ops dags plugins tests bench
