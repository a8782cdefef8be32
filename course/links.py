"""Where the course lives on GitHub: the two repositories, and each notebook's Colab badge.

The course has two repositories. This one (``INSTRUCTOR_REPO``, private) holds solutions, hidden
tests and the grading tooling; ``make publish`` writes the tree students see, which is pushed to
``STUDENT_REPO`` (public). Badges and the Colab install cell always point at the **student**
repository: a student never needs, and never gets, the private one. One constant each; the tests
check every badge against them.

>>> colab_url("lectures/00_environment_check.ipynb")
'https://colab.research.google.com/github/llm-course/llm-finetuning-course/blob/main/lectures/00_environment_check.ipynb'
>>> clone_url()
'https://github.com/llm-course/llm-finetuning-course'
"""

from __future__ import annotations

STUDENT_REPO = "llm-course/llm-finetuning-course"  # public: what badges open and Colab clones
INSTRUCTOR_REPO = "llm-course/llm-finetuning-course-instructor"  # private: this tree; runs the GPU workflow
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_url(path: str, repo: str = STUDENT_REPO, branch: str = BRANCH) -> str:
    """URL that opens the notebook at repo-relative `path` of the student repository in Colab."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"


def clone_url(repo: str = STUDENT_REPO) -> str:
    """What the Colab install cell clones."""
    return f"https://github.com/{repo}"


def badge_markdown(path: str) -> str:
    """Markdown for the "Open in Colab" badge of the notebook at `path`.

    >>> badge_markdown("lectures/01_tokenization.ipynb")[:30]
    '[![Open In Colab](https://cola'
    """
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path)})"
