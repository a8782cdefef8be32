"""The nbgrader preprocessors the course adds, and the pipelines that use them.

- Test cells are scored from what the grader observed, never from what the student's code displayed:
  `RobustExecute` runs each test cell through a harness that compiles the instructor's test source
  itself (no IPython input/AST transformers, no displayhook, no `ast_node_interactivity`) and must
  print a result line carrying a fresh random nonce; `ObservedScores` gives a test cell its points
  iff that line says it passed. A cell that was replaced, wrapped or silenced reports nothing and
  scores 0 (fail-safe). Stderr never costs points: only an exception fails a test.
- `SanitizeFeedback`: the feedback page keeps text and images only (no HTML, JavaScript, SVG or
  markdown HTML from the student) and no control characters.

- `RobustExecute`: nbgrader's `Execute`, except that a cell that kills the kernel (`os._exit`, a
  segfault, the OOM killer) or hangs past its timeout without answering the interrupt is recorded as
  an error *in that cell*, and the notebook is run again without it. Stock nbgrader gives up on the
  whole submission instead, so one bad cell would cost every point.
- `HideHiddenTests`: feedback is rendered from the autograded notebook, where nbgrader has put the
  hidden tests back. This removes them again, and drops the traceback of any cell that held hidden
  tests (a traceback prints the failing line), keeping `ename: evalue`.

Worked example (what a student's feedback shows for a test cell with hidden tests):

>>> from nbformat.v4 import new_code_cell, new_output
>>> cell = new_code_cell("assert f(1) == 2\\n### BEGIN HIDDEN TESTS\\nassert f(7) == 49\\n### END HIDDEN TESTS")
>>> cell.outputs = [new_output("error", ename="AssertionError", evalue="", traceback=["assert f(7) == 49"])]
>>> cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
>>> print(cell.source)
assert f(1) == 2
# (hidden tests are not shown in feedback)
>>> cell.outputs[0]["traceback"]
['AssertionError (details hidden: this cell holds hidden tests)']
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor, SaveAutoGrades
from nbgrader.utils import is_grade, is_solution
from traitlets import Integer, Unicode

BROKEN_CELL_ENAME = "GraderError"
RESULT_PREFIX = "\x1fcourse-test-result"  # + nonce + JSON, printed by the harness, removed from outputs
NO_RESULT = ("the test reported no result: its cell was altered or silenced at run time "
             "(an IPython input/AST transformer, a patched print/stdout) or the kernel stopped")
ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    r"""Text with terminal escape sequences and control characters removed (newlines and tabs kept).

    >>> clean_text("\x1b[31mred\x1b[0m\x07 ok\tdone\r")
    'red ok\tdone'
    """
    return CONTROL.sub("", ANSI.sub("", str(text)))


def is_test_cell(cell) -> bool:
    return cell.cell_type == "code" and is_grade(cell) and not is_solution(cell)


def harness(source: str, nonce: str, name: str) -> str:
    """The code sent to the kernel instead of a test cell's source (see the module docstring)."""
    encoded = base64.b64encode(source.encode()).decode()
    return (
        "try:\n"
        f"    _course_source = __import__('base64').b64decode('{encoded}').decode()\n"
        f"    __import__('linecache').cache[{name!r}] = (len(_course_source), None, _course_source.splitlines(True), {name!r})\n"
        f"    exec(compile(_course_source, {name!r}, 'exec'), globals())\n"
        "except BaseException as _course_error:\n"
        "    _course_result = {'status': 'error', 'ename': type(_course_error).__name__,\n"
        "                      'evalue': str(_course_error)[:2000],\n"
        "                      'traceback': __import__('traceback').format_exception(_course_error)[-30:]}\n"
        "else:\n"
        "    _course_result = {'status': 'ok'}\n"
        f"print('\\n{RESULT_PREFIX} {nonce} ' + __import__('json').dumps(_course_result), flush=True)\n"
        "del _course_result"
    )


def take_result(cell, nonce: str) -> dict:
    """Remove the harness's result line(s) from `cell`'s outputs and return the observed outcome."""
    found, pattern = [], re.compile(re.escape(RESULT_PREFIX) + r" (\w+) (\{.*\})")
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            lines = out["text"].split("\n")
            for line in lines:
                match = pattern.search(line)
                if match:
                    try:
                        found.append((match.group(1), json.loads(match.group(2))))
                    except ValueError:
                        found.append((match.group(1), {}))
            out["text"] = "\n".join(ln for ln in lines if RESULT_PREFIX not in ln)
    cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") != "stream" or o["text"].strip()]
    mine = [r for n, r in found if n == nonce]
    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
    if len(mine) == 1 and len(found) == 1 and mine[0].get("status") == "ok" and not errors:
        return {"status": "ok"}
    if mine and mine[-1].get("status") == "error":
        return {"status": "error", "ename": str(mine[-1].get("ename", "Error")),
                "evalue": str(mine[-1].get("evalue", "")), "traceback": list(mine[-1].get("traceback", []))}
    if errors:
        return {"status": "error", "ename": errors[0].get("ename", "Error"), "evalue": errors[0].get("evalue", "")}
    if len(found) > 1:
        return {"status": "error", "ename": BROKEN_CELL_ENAME, "evalue": "the test reported more than one result"}
    return {"status": "error", "ename": BROKEN_CELL_ENAME, "evalue": NO_RESULT}


class RobustExecute(Execute):
    """Execute every cell; a cell that kills or wedges the kernel becomes an error, the rest still run."""

    max_broken_cells = Integer(
        3, help="How many kernel-killing cells one notebook may have before grading it fails."
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        # The `python3` kernel is this interpreter (the .venv), started in the sandbox when one is active.
        from course.grading_kernel import kernel_manager_class

        kwargs.setdefault("kernel_manager_class", kernel_manager_class())
        super().__init__(*args, **kwargs)
        self._running_index: int | None = None

    def preprocess_cell(self, cell, resources, index):
        self._running_index = index  # read when the kernel dies under this cell
        if not is_test_cell(cell):
            return super().preprocess_cell(cell, resources, index)
        source, nonce = cell.source, secrets.token_hex(16)
        name = cell.metadata["nbgrader"].get("grade_id", f"cell {index}")
        cell.source = harness(source, nonce, f"<test {name}>")
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = source
        outcome = take_result(cell, nonce)
        self._outcomes[name] = outcome
        if outcome["status"] != "ok" and not any(o.get("output_type") == "error" for o in cell.outputs):
            tb = outcome.get("traceback") or [f"{outcome['ename']}: {outcome['evalue']}"]
            cell.outputs.append(new_output("error", ename=outcome["ename"], evalue=outcome["evalue"],
                                           traceback=[line.rstrip("\n") for line in tb]))
        return cell, resources

    def preprocess(self, nb, resources=None, km=None):
        broken: dict[int, str] = {}  # cell index -> why it was taken out
        resources = resources if resources is not None else {}
        while True:
            self._outcomes = {}  # grade_id -> outcome observed by the grader (only this run's count)
            trial = copy.deepcopy(nb)
            for index, reason in broken.items():
                trial.cells[index].source = f"raise RuntimeError({reason!r})"
            self._running_index = None
            try:
                executed, resources = super().preprocess(trial, resources, km)
            except (DeadKernelError, CellTimeoutError) as err:
                index = self._running_index
                if index is None or index in broken or len(broken) >= self.max_broken_cells:
                    raise
                broken[index] = _reason(err)
                self.log.warning("cell %d broke the kernel (%s); re-running without it", index, broken[index])
                continue
            for index, reason in broken.items():
                cell = executed.cells[index]
                cell.source = nb.cells[index].source  # graded as submitted, with the error below
                cell.outputs = [new_output("error", ename=BROKEN_CELL_ENAME, evalue=reason,
                                           traceback=[f"{BROKEN_CELL_ENAME}: {reason}"])]
                if is_test_cell(cell):
                    name = cell.metadata["nbgrader"].get("grade_id", f"cell {index}")
                    self._outcomes[name] = {"status": "error", "ename": BROKEN_CELL_ENAME, "evalue": reason}
            resources["course_outcomes"] = self._outcomes
            return executed, resources


def _reason(err: Exception) -> str:
    if isinstance(err, DeadKernelError):
        return "the kernel died while running this cell (os._exit, sys.exit from a thread, a crash, out of memory)"
    return "this cell did not finish within the time limit and ignored the interrupt"


class ObservedScores(SaveAutoGrades):
    """nbgrader's SaveAutoGrades, with test cells scored from the outcome RobustExecute observed.

    A test cell earns its points iff the harness reported that it ran to the end without an
    exception; displayed values (nbgrader's partial credit) and stderr are ignored. Answer cells
    graded by hand keep nbgrader's rule (no response = 0, else left for the grader).
    """

    def _add_score(self, cell, resources):
        if not is_test_cell(cell):
            return super()._add_score(cell, resources)
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        outcome = resources.get("course_outcomes", {}).get(cell.metadata["nbgrader"]["grade_id"], {})
        max_points = float(cell.metadata["nbgrader"]["points"])  # (determine_grade would parse displays)
        grade.auto_score = max_points if outcome.get("status") == "ok" else 0.0
        grade.needs_manual_grade = grade.manual_score is not None
        self.gradebook.db.commit()


class SanitizeFeedback(NbGraderPreprocessor):
    """Feedback shows text and images only: no HTML/JS/SVG outputs, no raw HTML, no control characters."""

    keep = ("text/plain", "image/png", "image/jpeg")

    def preprocess_cell(self, cell, resources, index):
        cell.pop("attachments", None)
        if cell.cell_type != "code":
            cell.source = clean_text(cell.source).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return cell, resources
        cell.source = clean_text(cell.source)
        outputs = []
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                out["text"] = clean_text(out.get("text", ""))
            elif kind == "error":
                out["ename"], out["evalue"] = clean_text(out.get("ename", "")), clean_text(out.get("evalue", ""))
                out["traceback"] = [clean_text(line) for line in out.get("traceback", [])]
            elif kind in ("execute_result", "display_data"):
                out["data"] = {k: (clean_text(v) if k == "text/plain" else v)
                               for k, v in out.get("data", {}).items() if k in self.keep}
                out["metadata"] = {}
                if not out["data"]:
                    continue
            outputs.append(out)
        cell.outputs = outputs
        return cell, resources


class HideHiddenTests(NbGraderPreprocessor):
    """Remove `### BEGIN/END HIDDEN TESTS` regions and their tracebacks from feedback."""

    begin = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end = Unicode("END HIDDEN TESTS").tag(config=True)
    placeholder = Unicode("# (hidden tests are not shown in feedback)").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code" or self.begin not in cell.source:
            return cell, resources
        kept, hidden = [], False
        for line in cell.source.split("\n"):
            if self.begin in line:
                hidden = True
                kept.append(line[: len(line) - len(line.lstrip())] + self.placeholder)
            elif self.end in line:
                hidden = False
            elif not hidden:
                kept.append(line)
        cell.source = "\n".join(kept)
        outputs = []  # what hidden tests print or say in their messages may give them away
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["evalue"] = ""
                output["traceback"] = [f"{output['ename']} (details hidden: this cell holds hidden tests)"]
                outputs.append(output)
        cell.outputs = outputs
        return cell, resources


def autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with `RobustExecute` and `ObservedScores` in place of its own."""
    from nbgrader.converters import Autograde

    swap = {Execute: RobustExecute, SaveAutoGrades: ObservedScores}
    return [swap.get(p, p) for p in Autograde.autograde_preprocessors.default()]


def feedback_preprocessors() -> list:
    """nbgrader's feedback pipeline with `HideHiddenTests` and `SanitizeFeedback` first."""
    from nbgrader.converters import GenerateFeedback

    return [HideHiddenTests, SanitizeFeedback, *GenerateFeedback.preprocessors.default()]
