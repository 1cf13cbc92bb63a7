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

# torch's Linux wheels pull in the CUDA libraries: the venv takes ~7 GB, and pip needs room for the wheels
# while it installs. Say so before pip fails half-way with "No space left on device".
SETUP_FREE_GB ?= 10
define check_free
@$(PY_SYS) -c "import os, shutil, sys, tempfile; need = $(SETUP_FREE_GB) * 2**30; \
disks = {os.stat(p).st_dev: p for p in (tempfile.gettempdir(), '.')}; \
bad = [(p, shutil.disk_usage(p).free / 2**30) for p in disks.values() if shutil.disk_usage(p).free < need]; \
[print(f'make setup: {p} has {gb:.1f} GB free; the install needs about $(SETUP_FREE_GB) GB (torch and its CUDA wheels). ' \
       'Free some space (or set SETUP_FREE_GB lower at your own risk).', file=sys.stderr) for p, gb in bad]; sys.exit(2 if bad else 0)"
endef

$(STAMP): pyproject.toml
	$(check_free)
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
