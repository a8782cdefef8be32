"""Where the course lives on GitHub, and the Colab badge of each notebook.

One constant names the repository; every notebook's badge and install cell are derived from it
(a test checks that each badge points at the notebook's own path).

>>> colab_url("lectures/00_environment_check.ipynb")
'https://colab.research.google.com/github/llm-course/llm-finetuning-course/blob/main/lectures/00_environment_check.ipynb'
"""

from __future__ import annotations

import sys

GITHUB_REPO = "llm-course/llm-finetuning-course"
BRANCH = "main"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"


def colab_url(path: str, repo: str = GITHUB_REPO, branch: str = BRANCH) -> str:
    """URL that opens the notebook at repo-relative `path` in Colab."""
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{path}"


def badge_markdown(path: str) -> str:
    """Markdown for the "Open in Colab" badge of the notebook at `path`.

    >>> badge_markdown("lectures/01_tokenization.ipynb")[:30]
    '[![Open In Colab](https://cola'
    """
    return f"[![Open In Colab]({BADGE_IMAGE})]({colab_url(path)})"


def in_colab() -> bool:
    """True inside a Google Colab runtime (the `google.colab` module is importable there only)."""
    if "google.colab" in sys.modules:
        return True
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True
