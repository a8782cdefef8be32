# Every target bootstraps .venv from the pins when it is missing, and does nothing extra when it is
# there (no network needed once .venv exists).
PY      := .venv/bin/python
STAMP   := .venv/.installed
PROFILE ?= auto

.PHONY: run test release grade publish bench lint clean-build

$(STAMP):
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade-strategy only-if-needed -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

## run: execute every lecture headless (PROFILE=auto|tiny|full), summary in build/run-summary.json
run: | $(STAMP)
	$(PY) -m course run --profile $(PROFILE) lectures

## test: unit tests, every lecture in the tiny profile, the grading round trip, notebook hygiene
test: | $(STAMP)
	$(PY) -m pytest

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

## bench: course wall time, per-notebook seconds, autograde time; GPU figures where a GPU is present
bench: | $(STAMP)
	$(PY) -m course bench

lint: | $(STAMP)
	$(PY) -m ruff check helpers course tests benchmarks lectures solutions

clean-build:
	rm -rf build
