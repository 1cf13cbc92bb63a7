# synthetic-cspine: make setup | test | release | bench
# `make setup` is idempotent: it reinstalls only when pyproject.toml (or the olah pin) changed since the last setup.
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
CONFIG ?= configs/demo.yaml
# The loopback Hub test (tests/release/test_hub.py) runs the olah Hub mirror from its own venv: olah pins
# its web stack (fastapi, huggingface_hub, ...) independently of the project's.
OLAH_VERSION := 0.5.4
OLAH_VENV    := .venv-olah
OLAH_STAMP   := $(OLAH_VENV)/.setup-stamp-$(OLAH_VERSION)

.PHONY: setup test release bench clean-demo

setup: $(STAMP) $(OLAH_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)
	@echo "setup done: $(VENV)"

$(OLAH_STAMP):
	@test -x $(OLAH_VENV)/bin/python || $(PY_SYS) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/python -m pip install -q olah==$(OLAH_VERSION)
	@touch $(OLAH_STAMP)
	@echo "setup done: $(OLAH_VENV) (olah $(OLAH_VERSION), for the loopback Hub test)"

test: setup
	$(PY) -m pytest -q

release: setup
	$(VENV)/bin/cspine release --config $(CONFIG)

bench: setup
	$(PY) -m bench

clean-demo:
	rm -rf runs/demo hub
