# stormproof -- two commands from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stormproof-installed
# PIP_CONSTRAINT also pins the build backend inside pip's isolated build environment.
PIP := PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip --disable-pip-version-check

.PHONY: demo demo-service test lint typecheck pytest bench lock clean

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

# The reference service (examples/orders_service) on 127.0.0.1:8000 under seeded bursts.
demo-service: $(STAMP)
	@mkdir -p build/demo && rm -f build/demo/orders_service.db*
	STORMPROOF_STORE_URL=sqlite:///build/demo/orders_service.db ORDERS_MAX_CONCURRENT=4 \
	ORDERS_MAX_QUEUE=4 ORDERS_LATENCY=0.03 ORDERS_CAPACITY=8 \
	$(PY) -m examples.orders_service --port 8000 & pid=$$!; trap "kill $$pid" EXIT; sleep 2; \
	$(VENV)/bin/stormproof load run --target http://127.0.0.1:8000/orders --shape bursts --seed 7 \
	  --duration 30 --peak 80..150 --burst 2..4 --idle 4..8 --tail 5 --window 1 \
	  --duplicates 0.05 --invalid 0.02 --report build/demo/load.html --no-live

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
