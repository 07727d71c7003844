"""A user's clone: tests and benches read their data relative to the repository, never a machine path."""

from __future__ import annotations

import json
import re
from pathlib import Path

#: A path literal that exists only on the machines this project was built on.
MACHINE_PATH = re.compile(r"""["'](/work/|/root/|/home/)""")


def test_tests_and_benches_name_no_machine_path(repo_root: Path) -> None:
    offenders = [
        f"{path.relative_to(repo_root)}:{number}: {line.strip()}"
        for folder in ("tests", "bench")
        for path in sorted((repo_root / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if MACHINE_PATH.search(line)
    ]
    assert offenders == []


def test_recorded_replies_are_in_the_repository(repo_root: Path) -> None:
    data = repo_root / "tests" / "data" / "panda-server-1.0.4"
    replies = json.loads((data / "replies.json").read_text())
    acquired = json.loads((data / "acquire_jobs-reply.json").read_text())
    assert "stats_by_site" in replies and "submit" in replies
    assert acquired["data"]["jobs"][0]["PandaID"]
