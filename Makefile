# qklab: build the book and run every test.
#   make book    install into .venv (if needed) and build the HTML book into _build/html
#   make pdf     the whole book as one PDF, _build/pdf/qklab.pdf (printed by headless Chromium)
#   make test    unit tests, mutation testing of the checks, exercise staleness, notebooks (nbval), book build, PDF, browser tests
# Other targets: venv, exercises, check-exercise NB=..., strip, clean, help.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.qklab-installed

# Notebook tests run in 2 pytest-xdist workers, each with one thread per kernel, so that the two
# workers do not fight over the two cores. Override: make test NB_WORKERS=4 NB_THREADS=2.
NB_WORKERS ?= 2
NB_THREADS ?= 1
NB_TIMEOUT ?= 300
NBVAL := $(PY) -m pytest --nbval-lax --nbval-current-env -p no:randomly \
	--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=$(NB_TIMEOUT) \
	-n $(NB_WORKERS) --dist loadfile
NB_ENV := OMP_NUM_THREADS=$(NB_THREADS) MKL_NUM_THREADS=$(NB_THREADS)
# The notebook tests may run on other CPU kernels than the book (CI: avx2), so that a number
# compared with one recorded elsewhere is checked off the machine it was recorded on. Empty: the
# best kernels this CPU has.
NB_CAPABILITY ?=
NBVAL_ENV := $(NB_ENV) $(if $(NB_CAPABILITY),ATEN_CPU_CAPABILITY=$(NB_CAPABILITY))

BOOK_OUT := _build/html

.PHONY: help venv execute book pdf test unit mutants exercises-check notebooks browser axe exercises check-exercise strip clean

help:
	@echo "make book                         build the book into $(BOOK_OUT) (open $(BOOK_OUT)/index.html)"
	@echo "make pdf                          the book as one PDF: $(PDF_OUT)"
	@echo "make test                         run every test (unit, mutants, exercises, notebooks, book, pdf, browser)"
	@echo "make exercises                    regenerate the learner notebooks in exercises/"
	@echo "make check-exercise NB=exercises/00_how_to_use.ipynb   check your answers in one notebook"
	@echo "make strip                        clear the outputs of chapters/*.ipynb"
	@echo "make clean                        remove _build and caches (keeps .venv)"

# --- environment --------------------------------------------------------------------------------
venv: $(STAMP)

# Reinstall only when the requirements or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet -e .
	@touch $@

# --- the book -----------------------------------------------------------------------------------
# Execution: the chapters run two at a time (one thread each) into the jupyter-cache that the
# book build reads, so each chapter executes once and the build itself only renders. The cache
# keys on the notebooks' code cells alone, so it is dropped whenever the package, the pinned
# requirements or the committed results the chapters read (results/) change, and with it Sphinx's
# read pages (_build/.doctrees: Sphinx re-reads only notebooks whose file changed, and would keep
# showing the old outputs of the others): every build shows what the current code and data compute.
CACHE := _build/.jupyter_cache
JCACHE := JUPYTERCACHE=$(CACHE) $(BIN)/jcache
SOURCE_HASH = $(shell cat requirements.txt $$(find qklab -name '*.py' | sort) $$(find results -type f 2>/dev/null | sort) | sha256sum | cut -c1-16)

execute: $(STAMP)
	@if [ "$$(cat _build/qklab-source 2>/dev/null)" != "$(SOURCE_HASH)" ]; then rm -rf $(CACHE) _build/claims _build/.doctrees; fi
	@mkdir -p _build && echo "$(SOURCE_HASH)" > _build/qklab-source
	@mkdir -p $(CACHE)
	@$(JCACHE) notebook clear --force > /dev/null
	@$(JCACHE) notebook add chapters/*.ipynb appendix/*.ipynb > /dev/null
	$(NB_ENV) $(JCACHE) project execute --executor local-parallel --timeout $(NB_TIMEOUT)
	@$(PY) _ext/execution_report.py $(CACHE)

# -W -n: every warning (broken reference included) is an error; --keep-going lists them all.
# A chapter that failed to execute stops `execute` with one line naming it and its error
# (_ext/execution_report.py), so no page is built from a half-executed chapter.
book: execute
	$(BIN)/jupyter-book build -W -n --keep-going .
	@echo "Book built: open $(BOOK_OUT)/index.html"

# The whole book in one PDF, from the built HTML (_ext/book_pdf.py): headless Chromium prints a
# document made of every page in table-of-contents order, math typeset by MathJax, with a contents
# page and page numbers. Needs /usr/bin/chromium and poppler-utils (pdfinfo). 65 to 100 s on 2
# cores shared with other jobs (2026-12-06); tests/browser/test_book_pdf.py reads it back.
PDF_OUT := _build/pdf/qklab.pdf
pdf: book
	$(PY) _ext/book_pdf.py --html $(BOOK_OUT) --out $(PDF_OUT)

# --- tests --------------------------------------------------------------------------------------
test: unit mutants exercises-check notebooks book pdf browser
	@echo "make test: all stages passed"

unit: $(STAMP)
	$(PY) -m pytest tests -m "not browser" -p no:randomly

# Mutation testing of the exercise checks (qklab/checks/mutants.py): every wrong answer derived
# from a reference must be rejected; prints the kill rate per exercise (about 30 s on 2 cores).
mutants: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m qklab.checks.mutants

exercises-check: $(STAMP)
	$(PY) -m qklab.exercises check

# nbval runs every chapter (solutions in place) and every learner notebook (stubs may raise only
# in cells tagged raises-exception). Their claims go to a folder of their own: the claims ledger
# page shows what the book's own execution measured.
notebooks: $(STAMP)
	QKLAB_LEDGER_DIR=$(CURDIR)/_build/nbval-claims $(NBVAL_ENV) $(NBVAL) chapters appendix exercises

# axe-core, the accessibility engine of tests/browser/test_accessibility.py, from the npm registry (pinned).
AXE_VERSION := 4.14.1
AXE := tests/browser/node_modules/axe-core/axe.min.js
axe: $(AXE)
$(AXE):
	npm install --silent --no-save --no-package-lock --prefix tests/browser axe-core@$(AXE_VERSION)

browser: $(STAMP) $(AXE)
	$(PY) -m pytest tests/browser -p no:randomly

# --- exercises ----------------------------------------------------------------------------------
exercises: $(STAMP)
	$(PY) -m qklab.exercises build

# Check a reader's answers (qklab/grading.py): run the notebook up to its last check cell, verify
# every check cell against the chapter, print each exercise as passed / not solved yet / wrong.
# Example: make check-exercise NB=exercises/00_how_to_use.ipynb   (ALL=1 runs every cell; HINT=1
# adds each failing exercise's hint; a second failure of the same exercise adds it anyway)
check-exercise: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make check-exercise NB=exercises/NN_slug.ipynb"; exit 2; }
	@$(PY) -m qklab.grading $(if $(ALL),--all) $(if $(HINT),--hint) $(NB)

# --- housekeeping -------------------------------------------------------------------------------
strip: $(STAMP)
	$(PY) -m qklab.exercises strip chapters/*.ipynb

clean:
	rm -rf _build .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
