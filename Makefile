# companion: two commands, `make test` and `make figures`; each sets the environment up first when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= organism
ONLY ?=
FORCE ?=
DRY_RUN ?=
EXECUTOR ?=
# Where pip is configured to find local wheels (the CPU torch on the dev machines); uv does not read pip's config.
# Deferred (?=): asked of pip only when setup runs.
FIND_LINKS ?= $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
# Written by a setup that finished; older than what setup reads means the environment is stale.
STAMP := $(VENV)/.companion-setup
# Jupyter refuses to start as root without it (containers run as root).
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: setup git-filter lint test test-system test-fast figures lab strip bench clean lock check-figures readme help

help:
	@echo "make setup | test | test-system | test-fast | figures [PROFILE=ci|organism|paper ONLY=01,03 FORCE=1 DRY_RUN=1 EXECUTOR=slurm] | lab [PROFILE=ci] | strip | bench | check-figures | readme | clean | lock"

$(PY):
	$(PYTHON) -m venv $(VENV)

# `make setup` always installs; every other target sets the environment up first when it is missing or stale (older
# than pyproject.toml, requirements.lock, requirements-overrides.txt or this file), so on a fresh clone `make figures` and `make test` just work.
setup:
	@rm -f $(STAMP)
	@$(MAKE) --no-print-directory $(STAMP)

$(STAMP): pyproject.toml requirements.lock requirements-overrides.txt Makefile | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.9
	UV_FIND_LINKS="$(FIND_LINKS)" $(VENV)/bin/uv pip install --python $(PY) --compile-bytecode \
		-c requirements.lock --override requirements-overrides.txt -e '.[test,bench]'
	UV_FIND_LINKS="$(FIND_LINKS)" $(VENV)/bin/uv pip install --python $(PY) --no-deps -r benchmarks/requirements-peers.txt
	@$(MAKE) --no-print-directory git-filter
	@$(PY) -c "import torch, transformer_lens; print('companion ready: torch', torch.__version__)"
	@touch $@
	@echo "the command is $(VENV)/bin/companion (or run \`source $(VENV)/bin/activate\` once per shell, then companion)"

# Strip notebook outputs on commit (the filter is local git config; .gitattributes names it): nbstripout, then the
# kernel metadata JupyterLab's autosave rewrites put back in its committed form (companion.backbone.nbclean), so
# opening a notebook in Lab leaves the tree clean. Git runs filters from the top of the work tree, so the venv's
# path is kept relative: every clone or worktree uses its own venv, and moving the checkout does not break git.
# The index is refreshed last, so the first `git status` is instant instead of running the filter over every notebook.
git-filter:
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		$(VENV)/bin/nbstripout --install --attributes .gitattributes && \
		git config filter.nbstripout.clean '$(PY) -m companion.backbone.nbclean' && \
		git config diff.ipynb.textconv '$(PY) -m companion.backbone.nbclean --textconv' && \
		{ git update-index -q --refresh >/dev/null || true; }; fi

# The tests on two workers, the longest first (a file's tests that share a module fixture on one worker:
# tests/xdist_groups.py): unit tests, organism training, every notebook on the ci profile, lint. Not the system tests
# (marked `system`), which make test-system runs; .ci/run runs both.
test: $(STAMP)
	$(PY) -m pytest -q -m "not system" -n 2 --dist loadgroup --no-loadscope-reorder --durations=25

# What needs a daemon, an emulator or a browser, or runs a profile end to end: jobs on the private Slurm cluster
# (.ci/slurm/cluster.sh up; COMPANION_SLURM_TESTS=1 makes a missing cluster a failure), training on qemu's emulated
# Intel and AMD CPUs (COMPANION_REQUIRE_QEMU=1 makes a missing qemu a failure), JupyterLab in Chromium, the paper
# profile's rehearsal. Serial: the emulated-CPU runs start in the background when collection ends.
test-system: $(STAMP)
	$(PY) -m pytest -q -m system --durations=25

# Unit tests only: no notebook runs, no organism training (tests marked slow or system are left out).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow and not system" -n 2 --dist loadgroup --no-loadscope-reorder

# Lint, format and types (ruff and mypy, configured in pyproject.toml); make test and test-fast run it as one of their
# tests (tests/user/test_lint.py), beside the others.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

figures: $(STAMP)
	$(VENV)/bin/companion figures --profile $(PROFILE) $(if $(ONLY),--only $(ONLY)) $(if $(FORCE),--force) $(if $(DRY_RUN),--dry-run) $(if $(EXECUTOR),--executor $(EXECUTOR))

check-figures: $(STAMP)
	$(VENV)/bin/companion check-figures --profile $(PROFILE)

# The README's findings block, rewritten from the committed organism sidecars (after regenerating figures/organism).
readme: $(STAMP)
	$(VENV)/bin/companion readme

# Notebooks open on $(PROFILE) (their parameters cell reads $$COMPANION_PROFILE): make lab PROFILE=ci. Saving writes
# the kernel metadata in its committed form, so opening and saving a notebook leaves `git status` empty.
LAB_ARGS ?=
lab: $(STAMP)
	COMPANION_PROFILE=$(PROFILE) $(VENV)/bin/jupyter lab $(LAB_ROOT) \
		--ContentsManager.pre_save_hook=companion.backbone.nbclean.lab_pre_save_hook $(LAB_ARGS) notebooks/

strip: $(STAMP)
	$(PY) -m companion.backbone.nbclean notebooks/*.ipynb

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lock:
	@# One universal resolution for every supported Python (3.10-3.14), keeping the current pins where they still fit.
	cp requirements.lock requirements.lock.tmp
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra bench --universal --python-version 3.10 \
		--override requirements-overrides.txt -o requirements.lock.tmp --no-header --no-annotate --quiet
	{ head -3 requirements.lock; cat requirements.lock.tmp; } > requirements.lock.new && rm requirements.lock.tmp
	mv requirements.lock.new requirements.lock
	$(PY) -m companion.backbone.envfile > environment.yml

clean:
	rm -rf build/ .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
