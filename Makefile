# Every target bootstraps .venv from the pins when it is missing, and does nothing extra when it is
# there (no network needed once .venv exists). `make test-newest` uses its own .venv-newest/.
PY      := .venv/bin/python
STAMP   := .venv/.installed
PROFILE ?= auto
# Parallelism: pytest-xdist workers (`-n`) for `make test`, kernels at once for `make run`.
# auto = the CPU cores available; JOBS=1 runs everything one at a time.
JOBS    ?= auto
# Extra pytest arguments, e.g. make test PYTEST_ARGS="-k dpo"
PYTEST_ARGS ?=
# loadgroup: tests sharing a module-scoped fixture stay on one worker (tests/conftest.py groups
# them); every other test, the notebook runs included, is handed out one by one.
PYTEST_XDIST = -n $(JOBS) --dist loadgroup
RUN_JOBS = $(if $(filter auto,$(JOBS)),,--jobs $(JOBS))

# The newest-versions environment: the newest release of every pinned library except torch (kept
# at its pin: the CPU wheel the course is verified with, and what Colab's runtime decides anyway).
NEWEST_VENV  := .venv-newest
NEWEST_PY    := $(NEWEST_VENV)/bin/python
NEWEST_STAMP := $(NEWEST_VENV)/.installed
KEEP_PINNED  := torch

.PHONY: run test release grade publish bench lint clean-build test-newest newest-env

$(STAMP):
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade-strategy only-if-needed -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

## run: execute every lecture headless (PROFILE=auto|tiny|full), summary in build/run-summary.json
run: | $(STAMP)
	$(PY) -m course run --profile $(PROFILE) $(RUN_JOBS) lectures

## test: unit tests, every lecture in the tiny profile, the grading round trip, notebook hygiene
# pytest exits 5 when it collected no tests: that is a failure here, said out loud.
test: | $(STAMP)
	@status=0; $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests (exit 5)" >&2; fi; exit $$status

## release: regenerate assignments/ (student versions) from solutions/
release: | $(STAMP)
	$(PY) -m course release

## grade: autograde submitted/<student>/<assignment>/, feedback, build/grades.csv
grade: | $(STAMP)
	$(PY) -m course grade

## publish: write the student tree (no solutions, hidden tests or tooling) to build/student/ (OUT=... elsewhere)
OUT ?= build/student
publish: | $(STAMP)
	$(PY) -m course publish --out $(OUT)

## bench: course wall time serial vs parallel, per-notebook seconds, autograde time; GPU figures on a GPU
bench: | $(STAMP)
	$(PY) -m course bench

lint: | $(STAMP)
	$(PY) -m ruff check helpers course tests benchmarks lectures solutions

clean-build:
	rm -rf build

## newest-env: .venv-newest/ with the newest releases (torch at its pin); rebuilt when a requirements
## file changes, or after `rm -rf .venv-newest` to pick up releases published since
$(NEWEST_STAMP): requirements.txt requirements-dev.txt
	rm -rf $(NEWEST_VENV)
	python3 -m venv $(NEWEST_VENV)
	grep -E '^($(subst $() ,|,$(KEEP_PINNED)))==' requirements.txt > $(NEWEST_VENV)/constraints.txt
	$(NEWEST_PY) -m pip install -q --upgrade -c $(NEWEST_VENV)/constraints.txt \
	    $$(sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\)==.*/\1/p' requirements.txt requirements-dev.txt \
	       | grep -v -x -E '$(subst $() ,|,$(KEEP_PINNED))')
	$(NEWEST_PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(NEWEST_PY) -m pip list --format=freeze > $(NEWEST_VENV)/versions.txt
	touch $(NEWEST_STAMP)

newest-env: $(NEWEST_STAMP)

## test-newest: `make test` and `make run PROFILE=tiny` against the newest releases, in .venv-newest/
## (never touches .venv). COURSE_NEWEST=1 skips exactly one test: installed versions == the pins.
test-newest: $(NEWEST_STAMP)
	@echo "newest-versions environment ($(NEWEST_VENV)/versions.txt):"; grep -i -E '^(transformers|trl|peft|datasets|huggingface.hub|accelerate|bitsandbytes|tokenizers|torch)==' \
	  $(NEWEST_VENV)/versions.txt | sed 's/^/  /'
	@status=0; \
	COURSE_NEWEST=1 $(NEWEST_PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "error: pytest collected no tests (exit 5)" >&2; fi; \
	COURSE_NEWEST=1 $(NEWEST_PY) -m course run --profile tiny --no-progress $(RUN_JOBS) \
	  --out build/newest/executed --summary build/newest/run-summary.json lectures || status=$$?; \
	exit $$status
