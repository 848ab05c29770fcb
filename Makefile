# Teresa: `make run` starts the server on its embedded defaults, `make test` runs the suite,
# `make services` installs and starts MariaDB and PostgreSQL on 127.0.0.1 for the tests that use them,
# `make cluster` builds the single-node Kubernetes of tests/cluster/ (hack/cluster/build, hack/cluster/images; cached),
# `make bench` runs every benchmark of bench/ and prints each figure next to its goal; `make bench QUICK=1`
# runs the short version of each (a few minutes in all).
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
TEST_WORKERS ?= 4
test: $(TEST_STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

BENCH_QUICK := $(if $(QUICK),--quick,)
bench: $(TEST_STAMP)
	-$(BIN)/python bench/router.py $(BENCH_QUICK)
	-$(BIN)/python bench/push.py --branch feature --skip-concurrent $(BENCH_QUICK)
	-$(BIN)/python bench/serve.py $(BENCH_QUICK)
	-$(BIN)/python bench/many_pushes.py $(BENCH_QUICK)
	-$(BIN)/python bench/push.py --skip-big --skip-concurrent $(BENCH_QUICK)
	-$(BIN)/python bench/redeploy.py $(BENCH_QUICK)
	-$(BIN)/python bench/replicas.py $(BENCH_QUICK)

docs: $(STAMP)
	$(BIN)/python -m server.docs > docs/commands.md
	$(BIN)/python -m server.docs --readme README.md

clean:
	rm -rf $(VENV) .teresa .pytest_cache
