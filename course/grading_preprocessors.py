"""The two nbgrader preprocessors the course adds, and the pipelines that use them.

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

import copy

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Integer, Unicode

BROKEN_CELL_ENAME = "GraderError"


class RobustExecute(Execute):
    """Execute every cell; a cell that kills or wedges the kernel becomes an error, the rest still run."""

    max_broken_cells = Integer(
        3, help="How many kernel-killing cells one notebook may have before grading it fails."
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        # The `python3` kernel is this interpreter (the .venv), never another Python's kernelspec.
        from course.run import venv_kernel_manager_class

        kwargs.setdefault("kernel_manager_class", venv_kernel_manager_class())
        super().__init__(*args, **kwargs)
        self._running_index: int | None = None

    def preprocess_cell(self, cell, resources, index):
        self._running_index = index  # read when the kernel dies under this cell
        return super().preprocess_cell(cell, resources, index)

    def preprocess(self, nb, resources=None, km=None):
        broken: dict[int, str] = {}  # cell index -> why it was taken out
        while True:
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
            return executed, resources


def _reason(err: Exception) -> str:
    if isinstance(err, DeadKernelError):
        return "the kernel died while running this cell (os._exit, sys.exit from a thread, a crash, out of memory)"
    return "this cell did not finish within the time limit and ignored the interrupt"


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
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output['ename']} (details hidden: this cell holds hidden tests)"]
        return cell, resources


def autograde_preprocessors() -> list:
    """nbgrader's autograde pipeline with `Execute` swapped for `RobustExecute`."""
    from nbgrader.converters import Autograde

    return [RobustExecute if p is Execute else p for p in Autograde.autograde_preprocessors.default()]


def feedback_preprocessors() -> list:
    """nbgrader's feedback pipeline with `HideHiddenTests` first."""
    from nbgrader.converters import GenerateFeedback

    return [HideHiddenTests, *GenerateFeedback.preprocessors.default()]
