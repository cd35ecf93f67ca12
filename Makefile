# companion: one command to set up, one to test, one to regenerate every figure.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= organism
ONLY ?=
FORCE ?=
# Where pip is configured to find local wheels (the CPU torch on the dev machines); uv does not read pip's config.
FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)

.PHONY: setup test figures lab strip bench clean lock check-figures help

help:
	@echo "make setup | test | figures [PROFILE=ci|organism|paper ONLY=01,03 FORCE=1] | lab | strip | bench | check-figures | clean | lock"

$(PY):
	$(PYTHON) -m venv $(VENV)

setup: $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_FIND_LINKS="$(FIND_LINKS)" $(VENV)/bin/uv pip install --python $(PY) --compile-bytecode \
		-c requirements.lock -e '.[test]'
	@# Strip notebook outputs on commit (the filter is local git config; .gitattributes names it).
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		$(VENV)/bin/nbstripout --install --attributes .gitattributes && \
		git config filter.nbstripout.extrakeys "metadata.papermill cell.metadata.papermill cell.metadata.execution metadata.widgets"; fi
	@$(PY) -c "import torch, transformer_lens; print('companion ready: torch', torch.__version__)"

test:
	$(PY) -m pytest -q

figures:
	$(VENV)/bin/companion figures --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(FORCE),--force)

check-figures:
	$(VENV)/bin/companion check-figures --profile $(PROFILE)

lab:
	$(VENV)/bin/jupyter lab notebooks/

strip:
	$(VENV)/bin/nbstripout --extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution metadata.widgets" notebooks/*.ipynb

bench:
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock:
	$(VENV)/bin/uv pip freeze --python $(PY) | grep -v -E '^(-e |companion|pip==|setuptools==|uv==|wheel==)' \
		| sed -E 's/^torch==([0-9.]+)\+cpu$$/torch==\1/' > requirements.lock.tmp
	{ head -2 requirements.lock; cat requirements.lock.tmp; } > requirements.lock.new && rm requirements.lock.tmp
	mv requirements.lock.new requirements.lock
	$(PY) -m companion.envfile > environment.yml

clean:
	rm -rf build/ .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
