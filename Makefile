# make demo: build every registered index over the bundled sample and compare with peers,
#            then answer one query through LangChain, LlamaIndex and Haystack.
# make test: lint (ruff, mypy) and the whole test suite twice, on the native kernels and
#            forced onto the fallback, then the kernel tests on the portable C path and on
#            the AVX-512 paths under emulation (installs redis-server, postgresql and
#            libsimde-dev first when missing and run as root; otherwise says what to install).
# Both create .venv on first use; torch (CPU build) is installed before anything that
# could pull a CUDA build of it.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0

.PHONY: demo test lint pytest servers bench clean

$(STAMP): pyproject.toml setup.py $(wildcard vecindex_core/_native/src/*)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench,torch,adapters,milvus,parquet,postgres,redis]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vecindex demo --out demo-out
	$(BIN)/python examples/frameworks.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

servers:
	bash scripts/ensure_servers.sh

pytest: $(STAMP) servers
	# the whole suite on the native kernels and, at the same time, forced onto the
	# numba/numpy fallback (VECINDEX_NATIVE=off); then the kernel tests on the portable C path
	# and on the AVX-512 paths under emulation (scripts/avx512_emulated.sh)
	bash scripts/run_tests.sh $(BIN)/python

test: lint pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/flat_vs_faiss.py

clean:
	rm -rf $(VENV) demo-out build *.egg-info
