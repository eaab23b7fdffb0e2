# One command for each job. `make test` sets everything up (venv, pip packages, Debian tools) and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# checkov in its own virtualenv: installed into the project's venv it would downgrade shared packages.
CHECKOV_VENV ?= .venv-checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: setup system-deps test lint demo emulator bench bench-local bench-console clean checkov provider-schemas chaos

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The project itself, editable: puts the `dicom-pipeline` command in $(VENV)/bin (deps came from above).
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(VENV)/.installed system-deps

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==3.3.30

checkov: $(CHECKOV)

# The google/google-beta provider schemas at the lowest and highest version terraform/versions.tf allows, from
# the CDK bindings on PyPI (pip download, once; only a compact schema is kept). Used by the schema check.
SCHEMAS := .cache/provider-schema/.complete
$(SCHEMAS): | $(VENV)/.installed
	$(PY) -m tests.terraform.provider_schema fetch
	touch $@

provider-schemas: $(SCHEMAS)

system-deps:
	./scripts/install-system-deps.sh

test: setup $(CHECKOV) $(SCHEMAS)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

demo: setup
	$(PY) -m local_stack demo

# Upload→row latency and burst throughput through the whole local stack (several minutes; not in `bench`).
bench-local: setup
	$(PY) bench/local_latency.py

# Every row of issue 15's fault table against the whole local stack, 800 uploads each (loopback only; each
# scenario bounded by CHAOS_SETTLE_BOUND seconds); prints the measured table. `make test` runs a subset.
CHAOS_UPLOADS ?= 800
chaos: setup
	rm -f .chaos-report.jsonl
	CHAOS_FULL=1 CHAOS_UPLOADS=$(CHAOS_UPLOADS) CHAOS_REPORT=.chaos-report.jsonl $(PY) -m pytest tests/chaos -q -p no:cacheprovider; \
	status=$$?; $(PY) -m tests.chaos.test_chaos .chaos-report.jsonl; exit $$status

# The web console's server time per page over a 10,000-instance store, and thumbnail latency (about 10 minutes).
bench-console: setup
	$(PY) bench/console_pages.py

emulator: setup
	$(PY) -m healthcare_emulator --host 127.0.0.1 --port 8089 --data-dir .emulator-data

bench: setup
	$(PY) bench/import_throughput.py
	$(PY) bench/gcs_calls.py
	$(PY) bench/export_bigquery.py
	$(PY) bench/export_png.py
	$(PY) bench/functions_cold_start.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache .mypy_cache .emulator-data .chaos-report.jsonl
