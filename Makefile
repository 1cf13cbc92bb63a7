# synthetic-cspine: make setup | test | release | bench
# `make setup` is idempotent: it reinstalls only when pyproject.toml changed since the last setup.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
CONFIG ?= configs/demo.yaml

.PHONY: setup test release bench clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)
	@echo "setup done: $(VENV)"

test: setup
	$(PY) -m pytest -q

release: setup
	$(VENV)/bin/cspine release --config $(CONFIG)

bench: setup
	$(PY) -m bench

clean-demo:
	rm -rf runs/demo hub
