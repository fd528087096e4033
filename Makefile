# The README's commands. `make run` starts the whole stack with a demo board;
# `make test` runs the test suite. Both create .venv and start missing local services.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint services venv bench bench-quick

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
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/pytest -q -ra --durations=15

# The benchmark (bench/): its own database, Redis DBs, queues, gunicorn and workers.
bench: venv services
	$(BIN)/python -m bench --out bench-results

bench-quick: venv services
	$(BIN)/python -m bench --quick --out bench-results/quick
