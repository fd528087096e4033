# The README's commands. `make run` starts the whole stack with a demo board;
# `make test` runs the test suite. Both create .venv and start missing local services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint services venv bench bench-quick
.PHONY: browser flower metrics-dir

$(BIN)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(BIN)/.installed

services:
	./bin/ensure-services

run: venv services
	$(BIN)/python bin/ensure-database
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py install_schedules
	$(BIN)/honcho start -f Procfile

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: venv services lint
test: browser
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -q -ra --durations=15

# The benchmark (bench/): its own database, Redis DBs, queues, gunicorn and workers.
bench: venv services
	$(BIN)/python -m bench --out bench-results

bench-quick: venv services
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
