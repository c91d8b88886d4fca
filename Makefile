# Developer entry points. The devenv (Docker engine + kube-apiserver) is managed by scripts/devenv.
PYTHON ?= python
LINT_PATHS := actors messages $(wildcard supervisor.py) tests scripts scripts/devenv
DEVENV := scripts/devenv

.PHONY: install lint up down status test run

install:
	$(PYTHON) -m pip install -q -e '.[test]'

lint:
	$(PYTHON) -m ruff check $(LINT_PATHS)
	$(PYTHON) -m ruff format --check $(LINT_PATHS)

up:
	$(DEVENV) up

down:
	$(DEVENV) down

status:
	$(DEVENV) status

# pytest exit 5 = no tests collected: a failure here, not a pass.
test: install lint up
	eval "$$($(DEVENV) env)"; $(PYTHON) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

run: up
	eval "$$($(DEVENV) env)" && exec $(PYTHON) supervisor.py
