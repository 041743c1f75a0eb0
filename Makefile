# Two commands for a newcomer: `make demo` (the embedded offline demo) and `make test`.
PYTHON ?= python3

.PHONY: install demo test test-slow bench dvc-yaml clean

install: .install-stamp
.install-stamp: pyproject.toml
	$(PYTHON) -m pip install -e ".[test]"
	touch $@

demo: install
	snakemake --cores all

test: install
	$(PYTHON) -m pytest

test-slow: install
	$(PYTHON) -m pytest -m slow

bench: install
	ucat bench

dvc-yaml: install
	ucat dvc-yaml

clean:
	rm -rf data models metrics results logs benchmarks .snakemake .ucat
