# Two commands for a newcomer: `make demo` (the embedded offline demo) and `make test`.
PYTHON ?= python3

.PHONY: install demo test test-slow bench dvc-yaml clean

install: .install-stamp
.install-stamp: pyproject.toml
	$(PYTHON) -m pip install -e ".[test]"
	# torchattacks pins requests~=2.25.1 and would break dvc: its real needs are already installed
	$(PYTHON) -m pip install --no-deps "torchattacks==3.5.1"
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
