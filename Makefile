# Two commands on a fresh machine with python3 and make: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: help install demo test test-unit chaos chaos-campaign soak lint bench bench-smoke up clean model-check

help:
	@echo "make demo   - the email-campaign kill/resume demo (embedded NATS + controller)"
	@echo "make test   - the test suite against a real nats-server (installs the system tools it drives)"
	@echo "make lint   - ruff and mypy"
	@echo "make chaos  - only the chaos tests"
	@echo "make soak   - the long soak tests"
	@echo "make model-check - the kill contract's model check, 5000 runs (MESH_MODEL_EXAMPLES)"
	@echo "make chaos-campaign - the fault campaign and its checker (CAMPAIGN_SECONDS=600 CAMPAIGN_SEED=1 CAMPAIGN_TOPOLOGY=single|cluster)"
	@echo "make bench  - the quick benchmark profile (writes bench/results/)"
	@echo "make bench-smoke - the bench scripts that need the bench extra, at tiny N"
	@echo "make up     - run nats-server + controller in the foreground (mesh up)"

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mesh demo

# The system tools the tests drive: a missing one is installed (apt-get) or named, never skipped.
# Two workers: every test starts its own servers on port 0, so none shares state with another.
TEST_WORKERS ?= 2
test: $(STAMP)
	.ci/system-tools
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

# The kill contract's model check with many more runs than `make test` gives it.
model-check: $(STAMP)
	MESH_MODEL_EXAMPLES=$${MESH_MODEL_EXAMPLES:-5000} $(BIN)/python -m pytest tests/unit/test_killmachine_model.py $(PYTEST_ARGS)

# A bounded run (1-3600 s): prints a summary table, writes history and anomalies to .mesh/campaign/.
chaos-campaign: $(STAMP)
	$(BIN)/python -m tests.campaign.run --seconds $${CAMPAIGN_SECONDS:-300} --seed $${CAMPAIGN_SEED:-1} --topology $${CAMPAIGN_TOPOLOGY:-single}

soak: $(STAMP)
	$(BIN)/python -m pytest -m soak -o addopts='' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check mesh agent_sdk controller cli gateway
	$(BIN)/mypy

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@rm -f $(VENV)/.bench-*
	@touch $@

bench: $(BENCH_STAMP)
	.ci/system-tools redis-server
	$(BIN)/python -m bench.run --profile $${BENCH_PROFILE:-quick}

bench-smoke: $(BENCH_STAMP)
	.ci/system-tools redis-server
	$(BIN)/python -m pytest -m bench -o addopts='-ra --strict-markers' tests/test_bench_smoke.py $(PYTEST_ARGS)

up: $(STAMP)
	$(BIN)/mesh up

clean:
	rm -rf $(VENV) .mesh .pytest_cache .mypy_cache .ruff_cache
