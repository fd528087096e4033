# The README's commands. `make run` starts the whole stack with a demo board;
# `make test` runs the test suite. Both create .venv and start missing local services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint services tools venv bench bench-quick test-unit
.PHONY: browser flower metrics-dir

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/.installed

services:
	./bin/ensure-services

# HAProxy and wrk (Debian packages) for make run, the tests and the benchmark.
tools:
	./bin/ensure-tools

run: venv services tools
	$(BIN)/python bin/ensure-database
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py install_schedules
	$(BIN)/honcho start -f Procfile

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv services tools lint
test: browser
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -q -ra --durations=15

# The pure logic (ordering, periods, submission validation, admission arithmetic, env
# parsing) in seconds, with no PostgreSQL, Redis or RabbitMQ needed: tests/unit/.
test-unit: venv
	$(BIN)/pytest -q tests/unit

# The benchmark (bench/): its own database, Redis DBs, queues, gunicorn and workers.
bench: venv services tools
	$(BIN)/python -m bench --out bench-results

bench-quick: venv services tools
	$(BIN)/python -m bench --quick --out bench-results/quick

# The browser test's chromium (a Debian package; Playwright never downloads one).
browser:
	./bin/ensure-browser

# Prometheus multiprocess mode: gunicorn and Celery processes write their metrics here,
# and the directory is emptied at each start (a dead process's counters must not linger).
METRICS_DIR := $(CURDIR)/.run/prometheus
metrics-dir:
	rm -rf $(METRICS_DIR) && mkdir -p $(METRICS_DIR)
run: metrics-dir
run: export PROMETHEUS_MULTIPROC_DIR := $(METRICS_DIR)
# make run is local (127.0.0.1): /metrics is open there. Production keeps it closed.
run: export LEADERBOARD_METRICS_PUBLIC ?= true

# Flower, Celery's monitor, on http://127.0.0.1:5555 beside `make run`.
flower: venv
	$(BIN)/celery -A leaderboard_project flower --address=127.0.0.1 --port=5555

# --- Citus (see README "Citus"): a coordinator on 5433 and workers on 5434, 5435 ---------
CITUS_PORT ?= 5433
CITUS_TEST_DB ?= $(or $(LEADERBOARD_TEST_DB_NAME),test_leaderboard)
# Fewer shards for the tests: each test's flush truncates every shard.
CITUS_TEST_SHARDS ?= 8
# The rebalancing test goes last: it adds a third worker (5436) and removes it again.
CITUS_TESTS ?= tests/test_citus_schema.py tests/test_citus_cluster.py tests/test_citus_ingest.py tests/test_ranking_semantics.py \
	tests/test_delivery.py tests/test_cache_recovery.py tests/test_end_to_end.py tests/test_citus_pipeline.py \
	tests/test_periods.py tests/test_hiding.py tests/test_erasure.py tests/test_citus_rebalance.py tests/test_profiles.py

.PHONY: citus run-citus test-citus

citus:
	./bin/ensure-citus

run-citus: export LEADERBOARD_DB_PORT = $(CITUS_PORT)
run-citus: venv services tools citus
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py distribute_tables
	$(BIN)/python manage.py install_schedules
	$(BIN)/honcho start -f Procfile

# The test database is made fresh on every node, migrated and distributed before pytest,
# which --reuse-db then keeps as it is (its own CREATE DATABASE would reach the coordinator only).
test-citus: export LEADERBOARD_DB_PORT = $(CITUS_PORT)
test-citus: export LEADERBOARD_CITUS_SHARD_COUNT = $(CITUS_TEST_SHARDS)
test-citus: export DJANGO_SETTINGS_MODULE = tests.settings
test-citus: venv services
	./bin/ensure-citus --fresh $(CITUS_TEST_DB)
	LEADERBOARD_DB_NAME=$(CITUS_TEST_DB) $(BIN)/python manage.py migrate --noinput -v 0
	LEADERBOARD_DB_NAME=$(CITUS_TEST_DB) $(BIN)/python manage.py distribute_tables
	$(BIN)/pytest -q -ra --durations=10 --reuse-db -m "not faults" $(CITUS_TESTS) \
		--deselect tests/test_citus_schema.py::test_it_leaves_plain_postgres_alone_when_distributing \
		--deselect tests/test_citus_schema.py::test_it_keeps_plain_postgres_on_the_array_statements
