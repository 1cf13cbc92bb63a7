# synthetic-cspine: make setup | test | release | bench
# `make setup` is idempotent: it reinstalls only when pyproject.toml (or the olah requirements) changed since the last setup.
# olah and everything it needs are pinned in tests/release/olah-requirements.txt (pip freeze of its venv).
PY_SYS ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.setup-stamp
CONFIG ?= configs/demo.yaml
# The loopback Hub test (tests/release/test_hub.py) runs the olah Hub mirror from its own venv: olah pins
# its web stack (fastapi, huggingface_hub, ...) independently of the project's.
OLAH_REQS    := tests/release/olah-requirements.txt
OLAH_VENV    := .venv-olah
OLAH_STAMP   := $(OLAH_VENV)/.setup-stamp

.PHONY: setup test release bench clean-demo

setup: $(STAMP) $(OLAH_STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)
	@echo "setup done: $(VENV)"

$(OLAH_STAMP): $(OLAH_REQS)
	@test -x $(OLAH_VENV)/bin/python || $(PY_SYS) -m venv $(OLAH_VENV)
	$(OLAH_VENV)/bin/python -m pip install -q -r $(OLAH_REQS)
	@touch $(OLAH_STAMP)
	@echo "setup done: $(OLAH_VENV) (olah, pinned in $(OLAH_REQS), for the loopback Hub test)"

test: setup
	$(PY) -m pytest -q

release: setup
	$(VENV)/bin/cspine release --config $(CONFIG)

bench: setup
	$(PY) -m bench

clean-demo:
	rm -rf runs/demo hub
