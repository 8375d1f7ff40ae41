# oci.discovery: the commands a newcomer types. See README.md.
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.tmp/collections
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := true

.PHONY: setup demo demo-stop test sanity units integration build bench clean

setup:
	scripts/bootstrap

## The main job on a local default: provision a local publisher, publish the examples, resolve them.
demo: setup
	scripts/demo

demo-stop:
	scripts/demo-stop

## The whole test suite: sanity, unit and integration tests (CI runs exactly this).
test: setup
	scripts/run-tests

sanity: setup
	scripts/run-tests sanity

units: setup
	scripts/run-tests units

integration: setup
	scripts/run-tests integration

build: setup
	ansible-galaxy collection build --force --output-path .tmp/dist .

bench: setup
	$(VENV)/bin/python -m benchmarks

clean: demo-stop
	rm -rf .tmp tests/output
