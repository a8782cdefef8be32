"""Assignment a5 (decoding filters and perplexity) through the real grading pipeline.

A scratch course holding only a5 is released and graded once (module fixture) by `course.grading.grade_class`
(nbgrader autograde, `NBGRADER_EXECUTION=autograde`, so only the known-answer and hidden tests run):

- the solution earns all 20 points and the blank release 0;
- a submission built only from lecture 06's code (its transformers processors wrapped as answers, its
  single-sequence perplexity) earns no more than what the lecture legitimately gives away: the
  unpadded-perplexity part;
- partial credit is per part: an off-by-one top-p loses exactly top-p's points, a perplexity that counts
  padding loses exactly the padding test's.

Outside oracles for the solution itself: transformers' processors and the tiny model's loss, on the answer
cells run in-process.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
import pytest
from scratch_course import scratch_course, solution_namespace

from course.grading import grade_class
from course.grading_course import REPO_ROOT, _tree_differences
from course.grading_normalize import answered_release

AID = "a5_decoding"
CELL_TIMEOUT = 60
PARTS = {"apply_temperature": ("test_temperature", "test_temperature_errors"),
         "top_k_filter": ("test_top_k", "test_top_k_edges"),
         "top_p_filter": ("test_top_p", "test_top_p_edges"),
         "min_p_filter": ("test_min_p", "test_min_p_edges"),
         "perplexity": ("test_perplexity", "test_perplexity_padding")}
LECTURE = REPO_ROOT / "lectures" / "06_generation_and_evaluation.ipynb"

# What lecture 06 offers for each answer: the library processor it calls, and its perplexity line
# (`cross_entropy(out.logits[0, :-1], ...)` of one unpadded sequence, applied row by row).
FROM_LECTURE = {
    "apply_temperature": "from transformers import TemperatureLogitsWarper\n\n"
                         "def apply_temperature(logits, temperature):\n"
                         "    return TemperatureLogitsWarper(temperature)(None, logits.clone())",
    "top_k_filter": "from transformers import TopKLogitsWarper\n\n"
                    "def top_k_filter(logits, k):\n    return TopKLogitsWarper(k)(None, logits.clone())",
    "top_p_filter": "from transformers import TopPLogitsWarper\n\n"
                    "def top_p_filter(logits, p):\n    return TopPLogitsWarper(p)(None, logits.clone())",
    "min_p_filter": "from transformers import MinPLogitsWarper\n\n"
                    "def min_p_filter(logits, min_p):\n    return MinPLogitsWarper(min_p)(None, logits.clone())",
    "perplexity": "def perplexity(logits, input_ids, attention_mask=None):\n"
                  "    return torch.stack([torch.nn.functional.cross_entropy(logits[b, :-1].float(), input_ids[b, 1:])\n"
                  "                        for b in range(len(input_ids))]).exp()",
}
GIVEN_AWAY = {"test_perplexity"}  # the lecture shows exp(mean NLL) of one unpadded sequence

# Plausible mistakes, each confined to one part.
OFF_BY_ONE_TOP_P = '''\
def top_p_filter(logits, p):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = sorted_logits.softmax(-1).cumsum(-1)
    remove = cumulative >= p  # counts the token itself: drops the one that crosses p
    remove[..., 0] = False
    return logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))'''
PADDING_COUNTED = '''\
def perplexity(logits, input_ids, attention_mask=None):
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return (-logps.mean(-1)).exp()  # every position, padding included'''


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _with_answers(nb, answers: dict[str, str]):
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def _submit(root: Path, student: str, nb) -> None:
    folder = root / "submitted" / student / AID
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{AID}.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """(root, rows by student) of a scratch course with only a5, released and graded once."""
    root = tmp_path_factory.mktemp("course")
    scratch_course(root, [AID])
    solution, blank = _read(root / "solutions" / AID / f"{AID}.ipynb"), _read(root / "assignments" / AID / f"{AID}.ipynb")
    answered = answered_release(blank, solution)  # an honest full answer (the raw solution is flagged)
    _submit(root, "solution", answered)
    _submit(root, "blank", blank)
    _submit(root, "from_lecture", _with_answers(_read(root / "assignments" / AID / f"{AID}.ipynb"), FROM_LECTURE))
    _submit(root, "off_by_one_top_p", _with_answers(copy.deepcopy(answered), {"top_p_filter": OFF_BY_ONE_TOP_P}))
    _submit(root, "padding_counted", _with_answers(copy.deepcopy(answered), {"perplexity": PADDING_COUNTED}))
    rows = grade_class(root, timeout=CELL_TIMEOUT, assignments=[AID])
    return root, {r.student: r for r in rows}


def _points(nb) -> dict[str, float]:
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade")}


POINTS = _points(_read(REPO_ROOT / "solutions" / AID / f"{AID}.ipynb"))


def _failed_cells(row) -> set[str]:
    return {p.cell for p in row.problems}


def test_points_and_parts():
    assert sum(POINTS.values()) == 20
    assert set(POINTS) == {t for tests in PARTS.values() for t in tests}


@pytest.mark.slow
def test_fresh_release_equals_committed_assignment(graded):
    root, _ = graded
    assert _tree_differences(root / "assignments" / AID, REPO_ROOT / "assignments" / AID) == []


@pytest.mark.slow
def test_solution_full_marks_blank_zero(graded):
    _, rows = graded
    solution, blank = rows["solution"], rows["blank"]
    assert (solution.status, solution.score, solution.max_score) == ("graded", 20, 20), solution
    assert solution.problems == [] and not solution.needs_manual_grade
    assert (blank.status, blank.score) == ("graded", 0), blank
    assert _failed_cells(blank) == set(POINTS)
    assert all("NotImplementedError" in p.reason for p in blank.problems)


@pytest.mark.slow
def test_lecture_code_earns_only_what_the_lecture_gives_away(graded):
    _, rows = graded
    row = rows["from_lecture"]
    assert row.status == "graded"
    assert row.score == sum(POINTS[c] for c in GIVEN_AWAY), row
    assert _failed_cells(row) == set(POINTS) - GIVEN_AWAY
    refused = [p for p in row.problems if p.cell in PARTS["top_k_filter"] + PARTS["top_p_filter"]]
    assert refused and all("transformers' own processor" in p.reason for p in refused), refused


@pytest.mark.slow
@pytest.mark.parametrize("student,part", [("off_by_one_top_p", "top_p_filter"), ("padding_counted", "perplexity")])
def test_a_mistake_costs_its_part_only(graded, student, part):
    _, rows = graded
    row = rows[student]
    lost = {t for t in PARTS[part] if t in _failed_cells(row)}
    assert lost and _failed_cells(row) == lost, row.problems
    assert row.score == 20 - sum(POINTS[t] for t in lost)


def test_the_lecture_still_offers_what_the_lecture_submission_uses():
    """FROM_LECTURE must stay what lecture 06 really shows: its processors, and no padded perplexity."""
    code = "\n".join(c.source for c in _read(LECTURE).cells if c.cell_type == "code")
    assert "cross_entropy(out.logits[0, :-1]" in code  # one unpadded sequence: no mask to handle
    for name in ("TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper", "MinPLogitsWarper"):
        assert f"{name}(" in code


# --- the solution against outside references (in-process, no grading) ------------------------------

def _solution_namespace() -> dict:
    return solution_namespace(AID)


def test_solution_filters_match_transformers():
    import torch
    from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    ns = _solution_namespace()
    torch.manual_seed(0)
    for scale in (0.5, 3.0, 10.0):
        scores = torch.randn(32, 300) * scale
        for ours, theirs in [(ns["apply_temperature"](scores, 0.6), TemperatureLogitsWarper(0.6)),
                             (ns["top_k_filter"](scores, 7), TopKLogitsWarper(7)),
                             (ns["top_p_filter"](scores, 0.8), TopPLogitsWarper(0.8)),
                             (ns["min_p_filter"](scores, 0.2), MinPLogitsWarper(0.2))]:
            expected = theirs(None, scores.clone())
            assert torch.equal(ours.isfinite(), expected.isfinite()), (scale, type(theirs).__name__)
            assert torch.allclose(ours[ours.isfinite()], expected[expected.isfinite()])


def test_guard_blocks_the_library_and_restores_it():
    import torch
    from transformers import TopKLogitsWarper

    ns = _solution_namespace()
    scores = torch.randn(2, 10)
    with ns["from_scratch"]():
        with pytest.raises(RuntimeError, match="own processor"):
            TopKLogitsWarper(3)(None, scores)
        ns["top_k_filter"](scores, 3)  # the answer itself runs
    assert TopKLogitsWarper(3)(None, scores).isfinite().sum() == 6  # restored afterwards


def test_solution_perplexity_matches_the_model_loss():
    import torch
    from transformers import AutoModelForCausalLM

    from helpers import resolve_model

    ns = _solution_namespace()
    model = AutoModelForCausalLM.from_pretrained(resolve_model("llama-2-7b-chat", "tiny")).eval()
    torch.manual_seed(1)
    ids = torch.randint(3, model.config.vocab_size, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        losses = torch.stack([model(ids[b:b + 1], attention_mask=mask[b:b + 1],
                                    labels=ids[b:b + 1].masked_fill(mask[b:b + 1] == 0, -100)).loss for b in range(3)])
    assert torch.allclose(ns["perplexity"](logits, ids, mask), losses.exp(), rtol=1e-4)


# --- hidden tests catch what the visible ones let through (in-process, seconds) ----------------------

HIDDEN_ONLY_MISTAKES = {
    "min_p_filter": '''\
def min_p_filter(logits, min_p):
    if not 0 <= min_p <= 1:
        raise ValueError(min_p)
    probs = logits.softmax(-1)
    return logits.masked_fill(probs <= min_p * probs.amax(-1, keepdim=True), float("-inf"))  # drops ties''',
    "perplexity": '''\
def perplexity(logits, input_ids, attention_mask=None):
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if logits.shape[:2] != input_ids.shape or attention_mask.shape != input_ids.shape:
        raise ValueError("shapes")
    logps = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    counted = attention_mask[:, 1:].float()  # left padding: the first real token counts, predicted from a pad
    return (-(logps * counted).sum(-1) / counted.sum(-1)).exp()''',
    "top_p_filter": '''\
def top_p_filter(logits, p):
    if not 0 < p <= 1:
        raise ValueError(p)
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = sorted_logits.softmax(-1)
    remove = probs.cumsum(-1) - probs >= p
    remove[..., 0] = False
    out = logits.clone()
    out[order[remove]] = float("-inf")  # right for one row only
    return out''',
}


def _run_test_cells(answers: dict[str, str], hidden: bool) -> set[str]:
    """grade_ids of the test cells that fail, run in-process like the autograder (with or without hidden tests)."""
    import os
    import re

    ns: dict = {}
    failed = set()
    before = os.environ.get("NBGRADER_EXECUTION")
    os.environ["NBGRADER_EXECUTION"] = "autograde"
    try:
        for cell in _read(REPO_ROOT / "solutions" / AID / f"{AID}.ipynb").cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta:
                continue
            source = answers.get(meta["grade_id"], cell.source)
            if not meta.get("grade"):
                exec(source, ns)
                continue
            if not hidden:
                source = re.sub(r"### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", source, flags=re.S)
            try:
                exec(source, dict(ns))
            except Exception:  # noqa: BLE001 - any failure fails the cell
                failed.add(meta["grade_id"])
    finally:
        if before is None:
            del os.environ["NBGRADER_EXECUTION"]
        else:
            os.environ["NBGRADER_EXECUTION"] = before
    return failed


@pytest.mark.parametrize("part", sorted(HIDDEN_ONLY_MISTAKES))
def test_hidden_tests_catch_what_visible_ones_miss(part):
    answers = {part: HIDDEN_ONLY_MISTAKES[part]}
    assert _run_test_cells(answers, hidden=False) == set()  # the student's own run looks fine
    failed = _run_test_cells(answers, hidden=True)
    assert failed and failed <= set(PARTS[part]), failed
