# LASER for PostgreSQL: `make demo` (the main job) and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := postgresql-15 postgresql-plpython3-15 postgresql-15-cron

.PHONY: demo test lint setup system-deps down clean stubs

demo: setup
	$(VENV)/bin/laser demo

test: setup lint
	$(VENV)/bin/python -m pytest

# ruff (pyproject's [tool.ruff]) and mypy (strict for sidecar/verify and model/, see [tool.mypy]).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

setup: system-deps $(VENV)/.installed

# PostgreSQL 15 with PL/Python (pg_stat_statements ships with the server package) and pg_cron (laser.schedule()).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[dev,bench,transformers,ray,train]"
	touch $@

# Regenerate the checked-in gRPC stubs after editing proto/laser_proto/laser.proto.
stubs: setup
	$(VENV)/bin/python proto/laser_proto/generate.py

down:
	$(VENV)/bin/laser db down

clean: down
	rm -rf .laser .laser-test
