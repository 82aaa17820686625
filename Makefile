# Two commands on a fresh machine: `make bench` (the latency table) and
# `make test`. Each creates or reuses .venv and installs loopfast into it with
# the bench extra (rich, matplotlib, pyzmq: the tables, --plot, the zmq-ipc row)
# and the test extra (which includes bench: its tests run the benchmark).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.loopfast-installed
SOURCES := pyproject.toml $(wildcard setup.py) $(wildcard src/loopfast/*.c)

.PHONY: test bench bench-apps stress cpython-suites lint install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) $(SOURCES)
	$(PY) -m pip install --quiet --upgrade pip
	# The C core must build here: the tests and the bench measure the ring.
	LOOPFAST_REQUIRE_C=1 $(PY) -m pip install --quiet -e '.[bench,test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests tools
	$(PY) -m mypy
	$(PY) tools/check_layers.py
	$(PY) -m pytest -m "not stress" -q

stress: $(STAMP)
	$(PY) -m pytest -m stress -q

# make cpython-suites CPYTHON_SUITES_ARGS="--json build/cpython-suites.json": CPython's own
# socket suites, plain and under loopfast run (ring, stream), against the expected
# differences (tools/cpython_suites; docs/cpython-suites.md). One suite at a time.
CPYTHON_SUITES_ARGS ?=

cpython-suites: $(STAMP)
	$(PY) -m tools.cpython_suites $(CPYTHON_SUITES_ARGS)

# make bench BENCH_ARGS="--json docs/bench/bench.json --plot docs/bench/latency.png"
BENCH_ARGS ?=

bench: $(STAMP)
	$(VENV)/bin/loopfast bench $(BENCH_ARGS)

# make bench-apps BENCH_APPS_ARGS="--json docs/bench/apps.json" (or "--quick"): real
# servers and clients from PyPI, plain and under loopfast run. Only this target
# installs the apps extra; make test skips the pairs whose packages are missing.
APPS_STAMP := $(VENV)/.loopfast-apps-installed
BENCH_APPS_ARGS ?=

$(APPS_STAMP): $(STAMP)
	LOOPFAST_REQUIRE_C=1 $(PY) -m pip install --quiet -e '.[bench,apps]'
	touch $(APPS_STAMP)

bench-apps: $(APPS_STAMP)
	$(VENV)/bin/loopfast bench apps $(BENCH_APPS_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check src tests tools
	$(PY) -m mypy
	$(PY) tools/check_layers.py

clean:
	rm -rf $(VENV) build src/*.egg-info

# ASan/UBSan build of the C core in its own venv (not part of `make test`): the
# rings' model and hostile-peer tests, the rendezvous calls (take_hello,
# rendezvous) and the arenas under the sanitizers. The tree is copied
# to build/asan-src so neither the in-place .so of .venv nor build/ is reused.
ASAN_VENV := .venv-asan
ASAN_SRC := build/asan-src

.PHONY: sanitize
sanitize:
	test -x $(ASAN_VENV)/bin/python || $(PYTHON) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/python -m pip install --quiet --upgrade pip
	rm -rf $(ASAN_SRC) && mkdir -p $(ASAN_SRC)
	cp -r pyproject.toml setup.py README.md src $(ASAN_SRC)/
	rm -f $(ASAN_SRC)/src/loopfast/*.so
	LOOPFAST_SANITIZE=1 $(ASAN_VENV)/bin/python -m pip install --quiet './$(ASAN_SRC)[test]'
	nm -D $(ASAN_VENV)/lib/python*/site-packages/loopfast/_ring*.so | grep -q __asan_init
	LD_PRELOAD=$$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(ASAN_VENV)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_ring_model.py tests/test_ring_hostile.py \
		tests/fastpath/test_hello_io.py tests/fastpath/test_rendezvous_call.py \
		tests/fastpath/test_arenas.py
