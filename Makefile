# The two set-up commands of the README: `make run` and `make test` (`make check` while working).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= var/node
NAME   ?= localhost
LISTEN ?= 127.0.0.1:7480

.PHONY: run test check typecheck example bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The editable install of this repository. setuptools maps sonet.* onto the top-level folders
# with a meta path finder and says so in a warning ("Editable installation. Please be careful
# with folders in your working directory ...": pip shows it as a BuildBackendWarning, noise
# on a newcomer's first `make run`); that warning alone is ignored, pip's other warnings and
# errors are shown as before.
PIP_EDITABLE := $(BIN)/python -W 'ignore:Editable installation:UserWarning' -m pip install -q -e

# One stamp per extra, rebuilt when pyproject.toml changes.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP_EDITABLE) '.[test]'
	touch $@ $(VENV)/.installed-run

# NAME= and LISTEN= apply to a new data dir only: an initialised one keeps its node.toml (its name
# is in every address and in its peers' pins), and a NAME/LISTEN given that differs is reported.
run: $(VENV)/.installed-run
	@if [ ! -f $(DATA)/node.toml ]; then \
		out=$$($(BIN)/sonet-node init --data $(DATA) --name $(NAME) --listen $(LISTEN)) || exit 1; \
		echo "$$out" | grep -v '^start it with:'; \
	else \
		name=$$(sed -n 's/^name *= *"\(.*\)"$$/\1/p' $(DATA)/node.toml); \
		listen=$$(sed -n 's/^listen *= *"\(.*\)"$$/\1/p' $(DATA)/node.toml); \
		if { [ "$(origin NAME)" != file ] && [ "$(NAME)" != "$$name" ]; } || \
		   { [ "$(origin LISTEN)" != file ] && [ "$(LISTEN)" != "$$listen" ]; }; then \
			echo "$(DATA) is already initialised as $$name on $$listen; NAME=/LISTEN= only apply to a new data dir — edit $(DATA)/node.toml or \`make clean\`" >&2; \
		fi; \
	fi
	$(BIN)/sonet-node run --data $(DATA)

# The suite on every core (pytest-xdist); --dist loadscope keeps a module's tests on one worker,
# so a module's nodes (module-scoped fixtures) start once. --no-loadscope-reorder hands the
# modules out in collection order: xdist's default order (most tests first) puts the slow
# single-test e2e modules (real nodes, 10-60 s each) last, so a run ended on one of them while
# the other workers idled. Each worker collects the modules longest first, by the seconds
# measured in tests/durations.json (tests/conftest.py): the long ones start at once and the
# small unit-test modules fill the end. `make test-durations` measures the table again.
# PYTHONDONTWRITEBYTECODE is emptied (unset) for the suite: it starts hundreds of Python processes
# (nodes, CLIs, examples), and with it set each compiled the whole package again (~0.5 s of CPU
# a start) and pytest rewrote every test module's asserts in each worker (__pycache__/ is ignored by git).
# One worker more than the cores: the e2e modules wait a lot (nodes starting, deadlines), and a
# third worker fills those waits on 2 cores. Fresh clones on the idle 2-core machine: 2 workers
# 13:12 wall (pytest 12:26, ~160 % of the cores); 3 workers 11:07 (pytest 10:20, 176 %).
# `make test WORKERS=2` sets it.
WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
# The suite's files (pytest's tmp_path, TMPDIR: node stores, device states, PostgreSQL's data
# dir) on tmpfs where there is one: every commit of a node or a device fsyncs, and on the disk
# those waits, queued behind three workers' and their nodes', held up the whole run (fresh
# clone, idle machine: 10:32 wall on /tmp, 8:30 on /dev/shm with the same tests). A SIGKILL
# loses nothing on either (the page cache outlives the process); the disk-full tests mount their
# own. One directory per checkout, emptied before a run and removed after it; `make test
# TEST_TMP=` keeps the defaults (/tmp, left in place for a look after a failure).
TEST_TMP ?= $(if $(wildcard /dev/shm/.),/dev/shm/sonet-tests-$(shell printf %s "$(CURDIR)" | cksum | cut -d' ' -f1))
TEST_TMP_SETUP := $(if $(TEST_TMP),rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)/tmp,true)
TEST_TMP_CLEANUP := $(if $(TEST_TMP),rm -rf $(TEST_TMP),true)
PYTEST := $(if $(TEST_TMP),TMPDIR=$(TEST_TMP)/tmp) PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadscope --no-loadscope-reorder $(if $(TEST_TMP),--basetemp=$(TEST_TMP)/pytest)

# Everything: the type check and every test, the slow ones too (the table of the fault runs at the
# end, then the 25 slowest tests: where the 10 minutes go). mypy runs beside pytest, not before
# it (a cold run is ~20 s of one core, which the suite's waits leave idle); its output is
# printed after pytest's, and `make test` fails if either failed.
test: $(VENV)/.installed-test typecheck-tree
	@$(TEST_TMP_SETUP)
	@$(BIN)/mypy -p sonet >.typecheck/mypy.out 2>&1 & mypy=$$!; \
	trap 'kill $$mypy 2>/dev/null; $(TEST_TMP_CLEANUP); exit 130' INT TERM; \
	$(PYTEST) --durations=25; tests=$$?; \
	$(TEST_TMP_CLEANUP); \
	wait $$mypy; typed=$$?; \
	echo "$(BIN)/mypy -p sonet"; cat .typecheck/mypy.out; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

# The store tests run against SQLite and PostgreSQL: tests/node/store/pg_cluster.py starts a
# throwaway server of its own (initdb in a temp dir). `make test` installs Debian's postgresql
# when it is missing (as root, as CI on a fresh machine) and fails rather than skips without it;
# `make check` skips the PostgreSQL runs (with the reason) where there is none.
test: export SONET_TEST_POSTGRES = require
test: postgres-server
.PHONY: postgres-server
postgres-server:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; \
		else \
			echo "PostgreSQL is missing: the store tests need its server binaries (apt-get install postgresql)" >&2; \
		fi; \
	fi

# The seconds each test module took, written to tests/durations.json (commit it): run again
# when slow modules came, went or changed much. Also prints the 30 modules that took the most
# CPU (the test process and the nodes and CLIs it started).
.PHONY: test-durations
test-durations: export SONET_TEST_POSTGRES = require
test-durations: postgres-server
	@$(TEST_TMP_SETUP)
	$(PYTEST) --write-durations; status=$$?; $(TEST_TMP_CLEANUP); exit $$status

# The inner loop, a few minutes: the type check and every test but @pytest.mark.slow (real
# node processes under faults, walkthroughs, long runs).
check: typecheck
	@$(TEST_TMP_SETUP)
	$(PYTEST) -m "not slow"; status=$$?; $(TEST_TMP_CLEANUP); exit $$status

# mypy over the installed layout (sonet.*), strict on sonet.core (pyproject.toml [tool.mypy]).
# The folders live at the top of the repository; .typecheck/sonet links them (and sonet/*.py)
# under one name.
PACKAGES := core transport client node federation
typecheck: typecheck-tree
	$(BIN)/mypy -p sonet

.PHONY: typecheck-tree
typecheck-tree: $(VENV)/.installed-test
	@mkdir -p .typecheck/sonet
	@for f in sonet/*.py; do ln -sfn ../../$$f .typecheck/$$f; done
	@for p in $(PACKAGES); do ln -sfn ../../$$p .typecheck/sonet/$$p; done

# Three federated nodes on loopback (alpha, beta, gamma via beta); see examples/three_nodes.py.
example: $(VENV)/.installed-run
	$(BIN)/python examples/three_nodes.py

# Benchmarks (not part of `make test`): a table on stdout, figures in bench/results.json.
bench: $(VENV)/.installed-run
	$(BIN)/python -m bench.run

# Fuzzing with atheris (not part of `make test`; installed into the venv on first use):
# `make fuzz` runs every target for FUZZ_SECONDS each (FUZZ_TARGETS=mls- only those whose names
# start so), corpora and crashes kept in var/fuzz/; `make fuzz TARGET=frame RUNS=100000` runs one.
# `.venv/bin/python -m fuzz --list` names the targets.
TARGET       ?=
RUNS         ?= 100000
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=

$(VENV)/.installed-fuzz: | $(BIN)/python
	@$(BIN)/python -m pip install -q 'atheris>=2.3,<3' >$(VENV)/fuzz-install.log 2>&1 || \
		{ echo "make fuzz: atheris could not be installed (pip install 'atheris>=2.3,<3' failed, see $(VENV)/fuzz-install.log)" >&2; exit 1; }
	@touch $@

.PHONY: fuzz
fuzz: $(VENV)/.installed-run $(VENV)/.installed-fuzz
	$(BIN)/python -m fuzz $(if $(TARGET),$(TARGET) -runs=$(RUNS),--each $(FUZZ_SECONDS) $(FUZZ_TARGETS))

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis .typecheck .mypy_cache
