# Two commands for a newcomer: `make demo` (the embedded offline demo) and `make test`.
PYTHON ?= python3

.PHONY: install demo paper-smoke test test-slow bench dvc-yaml clean

install: .install-stamp
.install-stamp: pyproject.toml
	$(PYTHON) -m pip install -e ".[test]"
	touch $@

demo: install
	snakemake --cores all

# the paper-shaped DAGs offline on CPU: random ViT-B/32 weights, replicas of the 16 sets and of MS-COCO, the main
# setting then the FARE setting (numbers mean nothing)
paper-smoke: install
	snakemake --cores all --configfile config/paper-smoke.yaml
	snakemake --cores all --configfile config/paper-fare-smoke.yaml

test: install
	$(PYTHON) -m pytest

test-slow: install
	$(PYTHON) -m pytest -m slow

bench: install
	ucat bench

dvc-yaml: install
	ucat dvc-yaml

# outputs and caches; metrics/ is versioned, so it goes back to its committed state (outside git: removed)
clean:
	rm -rf data models results logs benchmarks .snakemake .ucat
	(git checkout -q -- metrics && git clean -fdxq metrics) 2>/dev/null || rm -rf metrics
