"""Assignments a1 and a2 ask for what the course does not hand over, graded by the real pipeline.

For each assignment a submission is built programmatically from the released student notebook, with its
answer cells filled by code that only calls `helpers` or pastes the lecture's own functions (what a
student who copies from lecture 01/02 and the helpers package can do, plus trivial glue). It is graded
with `course.grading.grade_class` on a scratch course (real nbgrader, the sandboxed autograder), next to
the solution (full marks) and the blank release (zero).

What the lectures legitimately give away (the number each test states):
- a1 (20 points): 3. Lecture 01's `encode`/`decode` pass `test_encode_decode_round_trip` (any merges
  round-trip). Its `train` passes the visible half of `test_train_known_answers` (Wikipedia's Z/Y/X, the
  merge count, the ValueError) but not the hidden tie across a chunk boundary, so that cell scores 0.
  Everything GPT-4-specific — the pre-split, training inside chunks, the ids of a `tokenizers` pipeline
  on text whose chunks matter, special tokens — scores nothing.
- a2 (20 points): 0. No template in `helpers` is Gemma's, and `helpers.masking` trains the newline after
  `<end_of_turn>`; even with a correct template (a student who solved part 1), helpers' masking earns
  none of the 6 label points.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import nbformat
import pytest
from scratch_course import scratch_course

from course.grading import grade_class
from course.grading_course import REPO_ROOT
from course.grading_normalize import answered_release

pytestmark = pytest.mark.slow

A1, A2 = "a1_bpe_tokenizer", "a2_chat_templates"
LECTURE_GIVES_AWAY = {A1: 3, A2: 0}
LECTURE_PASSES = {A1: {"test_encode_decode_round_trip"}, A2: set()}
TEMPLATE_TESTS = {"test_template_single_turn", "test_template_conversations",
                  "test_template_refuses_what_gemma_refuses"}
LABEL_TESTS = {"test_assistant_labels_single_reply", "test_assistant_labels_multi_turn"}
MODEL_KEYS = ["llama-2-7b-chat", "llama-3.1-8b-instruct", "tinyllama-1.1b-chat", "mistral-7b-instruct",
              "qwen2.5-7b-instruct"]


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _grade_ids(nb, **flags) -> dict[str, dict]:
    return {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"] for c in nb.cells
            if all(c.metadata.get("nbgrader", {}).get(k) == v for k, v in flags.items())}


def _points(nb) -> dict[str, float]:
    return {gid: meta["points"] for gid, meta in _grade_ids(nb, grade=True).items()}


def _fill(released, answers: dict[str, str]):
    """The released notebook with the answer cells named in `answers` replaced (others left as stubs)."""
    nb = copy.deepcopy(released)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if cell.metadata.get("nbgrader", {}).get("solution") and gid in answers:
            cell.source = answers[gid]
    assert set(answers) <= set(_grade_ids(nb, solution=True)), "unknown answer cell"
    return nb


def lecture_functions(notebook: Path, names: set[str]) -> str:
    """The source of the named top-level functions (and the type aliases and imports they need) that a
    lecture defines in its code cells: what a student would copy from the lecture into an answer."""
    parts = []
    for cell in _read(notebook).cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith(("!", "%")):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython syntax (the Colab cell)
            continue
        for node in tree.body:
            keep = (isinstance(node, ast.FunctionDef) and node.name in names) or \
                (isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "Pair" for t in node.targets)) or \
                (isinstance(node, ast.ImportFrom) and node.module == "collections")
            if keep:
                parts.append(ast.get_source_segment(cell.source, node))
    found = {n for n in names if any(p.startswith(f"def {n}(") for p in parts)}
    assert found == names, f"lecture 01 no longer defines {names - found}"
    return "\n\n\n".join(dict.fromkeys(parts))


def a1_from_lecture_01() -> dict[str, str]:
    """a1's answer cells written from lecture 01's BPE (pasted verbatim, in a namespace) and glue."""
    lecture = lecture_functions(REPO_ROOT / "lectures" / "01_tokenization.ipynb",
                                {"get_stats", "merge", "best_pair", "train", "encode", "decode"})
    return {
        "pre_split": "def pre_split(text):\n    return [text]  # lecture 01 trains on whole texts\n",
        "train": (f"_LECTURE = {lecture!r}\n_lecture = {{}}\nexec(_LECTURE, _lecture)\n\n\n"
                  "def train(text, vocab_size):\n    return _lecture['train'](pre_split(text), vocab_size)[0]\n"),
        "encode_decode": ("def encode(text, merges):\n    return _lecture['encode'](text, merges)\n\n\n"
                          "def decode(ids, merges):\n    vocab = {i: bytes([i]) for i in range(256)}\n"
                          "    for (a, b), i in merges.items():\n        vocab[i] = vocab[a] + vocab[b]\n"
                          "    try:\n        return _lecture['decode'](ids, vocab)\n"
                          "    except KeyError as err:\n        raise ValueError(err) from None\n"),
        "special_tokens": ("def encode_special(text, merges, specials, allowed=True):\n"
                           "    return encode(text, merges)  # nothing in lecture 01 reserves ids\n\n\n"
                           "def decode_special(ids, merges, specials):\n    return decode(ids, merges)\n"),
    }


MASKING_LABELS = '''from helpers import masking


class _RenderOnly:  # what helpers.masking needs from a tokenizer: apply_chat_template(tokenize=False)
    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return render(TEMPLATE, messages, add_generation_prompt)


def assistant_labels(messages):
    text, spans = masking.assistant_spans(_RenderOnly(), messages)
    ids, labels = [], []
    for k, char in enumerate(text):
        piece = tokenize(char)
        ids += piece
        labels += piece if any(s <= k < e for s, e in spans) else [-100] * len(piece)
    return ids, labels
'''


def a2_from_helpers(model_key: str) -> dict[str, str]:
    """a2 answered with a template that helpers ships, and helpers.masking for the labels."""
    return {"chat_template": f"from helpers import MODELS\n\nTEMPLATE = MODELS[{model_key!r}].chat_template()\n",
            "assistant_labels": MASKING_LABELS}


def a2_solved_template_with_helpers_masking(solution) -> dict[str, str]:
    """Part 1 solved (the solution's template), labels from helpers.masking: the labels must still fail."""
    template_cell = next(c.source for c in solution.cells
                         if c.metadata.get("nbgrader", {}).get("grade_id") == "chat_template")
    template = template_cell.replace("### BEGIN SOLUTION\n", "").replace("### END SOLUTION", "")
    return {"chat_template": template, "assistant_labels": MASKING_LABELS}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{student: (row, points of each test cell)} for a1 and a2 submissions graded on a scratch course."""
    root = tmp_path_factory.mktemp("course")
    scratch_course(root, (A1, A2))
    subs = {}
    for aid in (A1, A2):
        sol, blank = _read(root / "solutions" / aid / f"{aid}.ipynb"), _read(root / "assignments" / aid / f"{aid}.ipynb")
        # what an honest student hands in: the release with the solution's answers (the raw solution
        # notebook carries the hidden tests, and the grader flags it)
        subs[("solution", aid)], subs[("blank", aid)] = answered_release(blank, sol), blank
    blank1, blank2 = subs[("blank", A1)], subs[("blank", A2)]
    subs[("lecture", A1)] = _fill(blank1, a1_from_lecture_01())
    for key in MODEL_KEYS:
        subs[(f"helpers-{key}", A2)] = _fill(blank2, a2_from_helpers(key))
    subs[("solved-template-helpers-masking", A2)] = _fill(
        blank2, a2_solved_template_with_helpers_masking(subs[("solution", A2)]))
    for (student, aid), nb in subs.items():
        folder = root / "submitted" / student / aid
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{aid}.ipynb")
    rows = grade_class(root, timeout=30)
    points = {aid: _points(subs[("solution", aid)]) for aid in (A1, A2)}
    return {(r.student, r.assignment): r for r in rows}, points


def _passed(row, points: dict[str, float]) -> set[str]:
    failed = {p.cell for p in row.problems}
    return {gid for gid in points if gid not in failed}


def test_solutions_earn_full_marks_and_blank_releases_zero(graded):
    rows, points = graded
    for aid in (A1, A2):
        assert sum(points[aid].values()) == 20
        assert len(points[aid]) >= 7  # partial credit: several small test cells
        sol, blank = rows[("solution", aid)], rows[("blank", aid)]
        assert (sol.status, sol.score, sol.problems) == ("graded", 20, []), sol
        assert (blank.status, blank.score) == ("graded", 0), blank


def test_a1_lecture_01_code_earns_only_what_the_lecture_gives_away(graded):
    rows, points = graded
    row = rows[("lecture", A1)]
    assert row.status == "graded", row
    assert row.score <= LECTURE_GIVES_AWAY[A1]
    assert _passed(row, points[A1]) == LECTURE_PASSES[A1], row.problems
    assert row.score == sum(points[A1][g] for g in LECTURE_PASSES[A1]) == LECTURE_GIVES_AWAY[A1]


@pytest.mark.parametrize("key", MODEL_KEYS)
def test_a2_no_helpers_template_answers_gemma(graded, key):
    rows, points = graded
    row = rows[(f"helpers-{key}", A2)]
    assert row.status == "graded", row
    assert row.score <= LECTURE_GIVES_AWAY[A2]
    assert _passed(row, points[A2]) == LECTURE_PASSES[A2], row.problems


def test_a2_helpers_masking_does_not_answer_the_labels(graded):
    """With part 1 solved, helpers.masking's labels (which train the newline after <end_of_turn>) earn
    nothing of part 2: the score is exactly the template's points."""
    rows, points = graded
    row = rows[("solved-template-helpers-masking", A2)]
    assert _passed(row, points[A2]) == TEMPLATE_TESTS, row.problems
    assert row.score == sum(points[A2][g] for g in TEMPLATE_TESTS) == 8
    assert not LABEL_TESTS & _passed(row, points[A2])


def test_pasted_lecture_code_is_lecture_01_bpe():
    """The code pasted into the a1 submission is lecture 01's own (found by name, not rewritten here) and
    behaves as the lecture asserts: Wikipedia's Z/Y/X."""
    ns: dict = {}
    exec(lecture_functions(REPO_ROOT / "lectures" / "01_tokenization.ipynb",  # noqa: S102 - the lecture's code
                           {"get_stats", "merge", "best_pair", "train", "encode", "decode"}), ns)
    merges, vocab = ns["train"]("aaabdaaabac", 259)
    assert list(merges) == [(97, 97), (97, 98), (256, 257)]
    assert ns["encode"]("aaabdaaabac", merges) == [258, 100, 258, 97, 99]


def test_a2_hidden_reference_is_gemmas_real_template():
    """The template a2's hidden tests compare with is byte-equal to TRL's copy of Gemma's original, the
    string TRL compares a tokenizer's template with to recognise Gemma (`gemma_chat_template`)."""
    from trl.chat_template_utils import gemma_chat_template

    solution = _read(REPO_ROOT / "solutions" / A2 / f"{A2}.ipynb")
    cell = next(c.source for c in solution.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "test_template_conversations")
    start = cell.index("_GEMMA = ")
    ns: dict = {}
    exec(cell[start:cell.index('"""', cell.index('"""', start) + 3) + 3], ns)  # noqa: S102 - one assignment
    assert ns["_GEMMA"] == gemma_chat_template
