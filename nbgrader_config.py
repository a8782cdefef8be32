"""nbgrader configuration of the course: read by `nbgrader ...` and formgrader run from the repository
root, and by `course.grading` (which may move `root` to a scratch directory, as the tests do).

Layout: solutions/<aid>/ (instructor source) -> assignments/<aid>/ (student versions, committed)
-> submitted/<student>/<aid>/ (collected) -> build/autograded/, build/feedback/, build/gradebook.db.
"""

import os

from course.grading_preprocessors import autograde_preprocessors, feedback_preprocessors

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)
ROOT = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.course_id = "llm-finetuning"
c.CourseDirectory.root = ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = os.path.join("build", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("build", "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(ROOT, "build", "gradebook.db")
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".DS_Store"]

# Student code runs in this interpreter's `python3` kernel, in the sandbox (course/sandbox.py). The slowest graded cell runs in well under
# a second on CPU; 30 s leaves room for a loaded machine and still stops an infinite loop quickly.
c.Execute.kernel_name = "python3"
c.Execute.timeout = 30
c.Execute.startup_timeout = 60
c.RobustExecute.max_broken_cells = 3

# A submission that deleted a graded cell gets the instructor's copy back (graded as usual: a restored
# test cell runs the original tests, a restored answer cell is the unanswered stub).
c.OverwriteCells.add_missing_cells = True
c.Autograde.create_student = True
c.Autograde.autograde_preprocessors = autograde_preprocessors()
# Feedback is generated from the autograded notebook, which holds the hidden tests again: strip them.
c.GenerateFeedback.preprocessors = feedback_preprocessors()
# A submission whose timestamp.txt is after the assignment's due date (set with
# `nbgrader db assignment add <aid> --duedate ...` or in formgrader) scores 0; no due date, no penalty.
c.LateSubmissionPlugin.penalty_method = "zero"
# Output kept per cell in the autograded notebook and the feedback (a flood of prints is cut, not graded).
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
