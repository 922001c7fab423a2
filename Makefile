# gridtwin: every target brings .venv and node_modules up to date first (a no-op when current).
SHELL := /bin/bash
PY      := .venv/bin/python
UV      := .venv/bin/uv
VSTAMP  := .venv/.installed
NSTAMP  := node_modules/.installed
SCEN    ?= scenarios/quickstart.yaml
OUT     ?= results/quickstart

.PHONY: setup demo test lint bench clean contracts

setup: $(VSTAMP) $(NSTAMP)

$(VSTAMP): requirements.lock pyproject.toml
	@test -x $(PY) || python3 -m venv .venv
	@test -x $(UV) || $(PY) -m pip install --quiet "$$(grep '^uv==' requirements.lock)"
	$(UV) pip install --quiet --python $(PY) -r requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	@touch $@

$(NSTAMP): package.json package-lock.json
	npm install --no-audit --no-fund --loglevel=error --no-save
	@touch $@

demo: setup
	.venv/bin/twin run $(SCEN) --out $(OUT)
	@echo "Open the dashboard with:  .venv/bin/twin dashboard $(OUT)"

# the suite on TEST_WORKERS pytest-xdist workers, whole modules per worker (module fixtures run
# once), the grid kernels compiled once meanwhile (tests/_kernel_warmup.py); TEST_WORKERS=0: one process
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Recompile the Solidity contracts and rewrite their checked-in artifacts (ABI + bytecode,
# keyed by source hash + solc version); run after editing any .sol file and commit the result.
contracts: setup
	$(PY) -m twin.chain.compile twin/chain/contracts tests/chain/contracts

lint: setup
	.venv/bin/ruff check twin tests bench
	.venv/bin/mypy twin

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf .venv node_modules results .pytest_cache .cache
