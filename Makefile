# Two entry points for a fresh machine (Python >= 3.10 with pip, no GPU needed):
#   make figures  -> create/reuse .venv, install, execute every notebook headless, write figures/
#   make test     -> create/reuse .venv, install with test extras, run the whole test suite
#   make lab      -> create/reuse .venv, start JupyterLab on notebooks/
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: figures test lint venv clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever pyproject.toml changes (stamp files record the last install).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

venv: $(VENV)/.installed

figures: $(VENV)/.installed
	$(BIN)/python scripts/run_notebooks.py --figures-dir figures

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

# JupyterLab on notebooks/ with the project's settings (jupyter_config/: no news prompt,
# notebooks saved without outputs). Options: make lab PORT=8899 IP=0.0.0.0 NO_BROWSER=1
.PHONY: lab
lab: $(VENV)/.installed
	cd notebooks && JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter_config $(abspath $(BIN))/jupyter lab \
		--LabApp.app_settings_dir=$(CURDIR)/jupyter_config/lab/settings \
		$(if $(PORT),--port=$(PORT)) $(if $(IP),--ip=$(IP)) $(if $(NO_BROWSER),--no-browser) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# ruff lints and format-checks the notebooks' code cells too (native .ipynb support).
lint: $(VENV)/.installed-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The documentation site (docs/, Sphinx + myst-nb + furo) into build/docs/, offline, warnings
# are errors; notebooks are rendered from make figures' copies or executed fast (cached).
# Serve it with `python -m http.server -d build/docs`.
.PHONY: docs
$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(VENV)/.installed $(VENV)/.installed-test $@

docs: $(VENV)/.installed-docs
	$(BIN)/python -m sphinx -W --keep-going -q -b html -d build/docs-doctrees docs build/docs

clean-venv:
	rm -rf $(VENV)
