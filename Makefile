# planet-torch: `make demo` and `make test` set everything up themselves, in .venv, with the pins of
# constraints.txt, through the venv's own `python -m pip` -- never into another Python.
SHELL := /bin/bash
VENV  := .venv
VPY   := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The interpreter the venv is made from: python3.11 if present, else python3 if it is 3.11.
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: setup demo test lint typecheck unit bench lock clean

setup: $(STAMP)

# Re-runs only when pyproject.toml or constraints.txt changed (or the venv is missing/broken).
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "planet-torch needs Python 3.11; found $(PYTHON) = $$($(PYTHON) --version 2>&1). Install python3.11 or run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)"; exit 1; }
	@if [ -x $(VPY) ] && ! $(VPY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then \
	  echo "removing $(VENV): it was made from another Python"; rm -rf $(VENV); fi
	@[ -x $(VPY) ] || { echo "creating $(VENV) from $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(VPY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@$(VPY) -m pip check >/dev/null || { $(VPY) -m pip check; exit 1; }
	@touch $(STAMP)
	@echo "environment ready: $(VPY) ($$($(VPY) --version))"

# A few minutes of the `cpu` preset on cartpole-swingup (a task of the paper's Table 1): seed
# episodes, 100 updates, two planned episodes, two test phases, a 2-episode eval of the final
# model. Its curve shows the random policy's level and the published 100k-step scores; its last
# lines say how long this machine needs for the whole 100k-step benchmark run, and the command.
# Then `planet inspect`: figures + report.html of what the model learnt.
DEMO_RUN := runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: $(STAMP)
	$(VENV)/bin/planet train --task cartpole-swingup --preset cpu --run-dir $(DEMO_RUN) \
	  --schedule.total-updates 100 --schedule.test-every-updates 50 \
	  --schedule.final-eval-episodes 2
	$(VENV)/bin/planet inspect --run-dir $(DEMO_RUN)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy src/planet_torch

unit: $(STAMP)
	$(VPY) -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

test: lint typecheck unit

bench: $(STAMP)
	$(VPY) benchmarks/run_all.py

# Re-pin every package to what is installed now (after changing dependencies in pyproject.toml).
lock: $(STAMP)
	@{ sed -n '1,3p' constraints.txt; $(VPY) -m pip freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt && echo "constraints.txt updated"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
