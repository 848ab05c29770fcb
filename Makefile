# Teresa: `make run` starts the server on its embedded defaults, `make test` runs the suite,
# `make services` installs and starts MariaDB and PostgreSQL on 127.0.0.1 for the tests that use them,
# `make cluster` builds the single-node Kubernetes of tests/cluster/ (hack/cluster/build, hack/cluster/images; cached),
# `make bench` runs bench/push.py, bench/redeploy.py and bench/replicas.py (BENCH_ARGS="--skip-big" passes options to push.py).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: `make run` installs Teresa and its runtime dependencies only; the test tools
# (pytest, mypy, kubectl, SeaweedFS ...) install for `make test`, `make bench` and `make docs`.
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test services cluster docs bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/teresa serve

services:
	hack/services

cluster:
	hack/cluster/build
	hack/cluster/images

# Tests run on TEST_WORKERS pytest-xdist workers (most wait on builds, servers and clusters rather than
# compute); the real cluster's tests share one worker (tests/conftest.py). TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 3
test: $(TEST_STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python bench/push.py $(BENCH_ARGS)
	$(BIN)/python bench/redeploy.py
	$(BIN)/python bench/replicas.py

docs: $(STAMP)
	$(BIN)/python -m server.docs > docs/commands.md

clean:
	rm -rf $(VENV) .teresa .pytest_cache
