# `make test` and `make demo` set everything up from nothing: venv, release wheel, dev extra.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: venv wheel install test demo bench lint clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip "maturin>=1.7,<2"

venv: $(PY)

# An abi3 wheel (one for every CPython >= 3.10) in dist/.
wheel: $(PY)
	rm -rf dist
	$(VENV)/bin/maturin build --release --out dist

# The built wheel, not an editable install, with the dev extra.
install: wheel
	$(PIP) install --quiet "$$(ls dist/lrfind-*.whl)[dev]"
	$(PIP) install --quiet --force-reinstall --no-deps dist/lrfind-*.whl

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo clippy --all-targets --features python -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches

test: install lint
	cargo test
	$(PY) -m mypy.stubtest lrfind._core
	$(PY) -m pytest

demo: install
	$(VENV)/bin/lrfind demo

bench: install
	cargo bench --bench core
	$(PY) -m pytest benches --benchmark-enable --benchmark-only --benchmark-columns=min,median,mean,rounds

clean:
	rm -rf dist target $(VENV)
