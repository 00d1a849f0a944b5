# Two commands for a fresh machine (python3, make, the OS package manager):
#   make demo   install into .venv and run the main job on the embedded SQLite default
#   make test   install with test extras and run every test, ruff and mypy --strict
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/consortia demo

test: $(STAMP)
	$(BIN)/ruff check src tests scripts bench
	$(BIN)/ruff format --check src tests scripts bench
	$(BIN)/mypy --strict src
	$(BIN)/python scripts/test_postgres.py ensure
	$(BIN)/python scripts/test_chromium.py ensure
	$(BIN)/python scripts/test_nginx.py ensure
	# bytecode once, for the test processes and the ~150 servers and commands the tests start
	$(BIN)/python -m compileall -q -j 0 src
	$(BIN)/pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder
	$(BIN)/python scripts/test_postgres.py stop

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
