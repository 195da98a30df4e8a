# stormproof -- two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stormproof-installed
# PIP_CONSTRAINT also pins the build backend inside pip's isolated build environment.
PIP := PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip --disable-pip-version-check

.PHONY: demo test lint typecheck pytest bench lock clean

$(PY):
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "stormproof needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml constraints.txt
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/retry_schedule.py
	@mkdir -p build/demo
	$(VENV)/bin/stormproof run simple-collapse --seeds 10 --report build/demo/simple-collapse.html
	@rm -f build/demo/orders.db build/demo/orders.db-wal build/demo/orders.db-shm
	$(PY) examples/idempotent_orders.py build/demo/orders.db

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: $(STAMP)
	$(VENV)/bin/mypy --strict src

pytest: $(STAMP)
	$(VENV)/bin/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) benchmarks/policies.py

lock: $(STAMP)
	{ sed -n '1,4p' constraints.txt; $(PIP) freeze --exclude-editable | grep -iv '^stormproof'; } > constraints.new
	mv constraints.new constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
