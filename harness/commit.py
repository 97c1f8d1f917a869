"""The commit a result was made by: run.json's provenance, a row's result, a benchmark's."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

COMMIT_ENV = "ALLCONV_COMMIT"


def git_commit() -> str | None:
    """HEAD of the checkout holding this file, with '-dirty' for uncommitted tracked changes
    (what run.json's provenance and the row results record). $ALLCONV_COMMIT, when set, names
    it instead: a copy of the tree on a remote GPU machine has no .git, or a stale one."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("-dirty" if dirty.strip() else "")
