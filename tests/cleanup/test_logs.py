"""Pilot log cleanup on real files in a temporary tree: age, per-queue fair watermark, symlinks, live files."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autopilot_ops.cleanup.logs import AGE, WATERMARK, LogPolicy, clean_logs, fair_share

NOW = time.time()
OLD_DAY = "2020-01-01"
TODAY = dt.datetime.fromtimestamp(NOW, dt.timezone.utc).date().isoformat()
HOUR, DAY = 3600, 86400
NO_WATERMARK = {"watch_filesystem": False}


def write(path: Path, size: int = 100, age_s: float = 10 * DAY) -> Path:
    """A file of ``size`` bytes last modified ``age_s`` seconds before NOW."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def age_dirs(root: Path, age_s: float = 10 * DAY) -> None:
    """Backdate every directory under ``root`` (creating files made them fresh)."""
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.utime(path, (NOW - age_s, NOW - age_s))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def test_age_pass_removes_old_files_and_then_empty_directories(root: Path) -> None:
    old = [write(root / OLD_DAY / "Q1" / f"{i}.out", age_s=8 * DAY) for i in range(3)]
    young = write(root / "2020-01-02" / "Q1" / "9.out", age_s=2 * DAY)
    old_q2 = write(root / "2020-01-02" / "Q2" / "1.err", size=50, age_s=30 * DAY)
    age_dirs(root)

    report = clean_logs(root, LogPolicy(max_age_days=7, **NO_WATERMARK), now=NOW)

    assert not any(p.exists() for p in [*old, old_q2])
    assert young.exists()
    assert not (root / OLD_DAY).exists(), "the emptied date directory is removed"
    assert not (root / "2020-01-02" / "Q2").exists()
    assert (root / "2020-01-02" / "Q1").is_dir()
    assert root.is_dir(), "the root itself stays"
    assert report.queues["Q1"].removed_files == {AGE: 3}
    assert report.queues["Q1"].removed_bytes == {AGE: 300}
    assert (report.queues["Q1"].kept_files, report.queues["Q1"].kept_bytes) == (1, 100)
    assert report.queues["Q2"].removed_bytes == {AGE: 50}
    assert report.dirs_removed == 3  # 2020-01-01/Q1, 2020-01-01, 2020-01-02/Q2
    assert report.watermark is None
    assert report.to_dict()["removed_files"] == 4


def test_watermark_trims_only_the_queue_over_its_fair_share(root: Path) -> None:
    # SMALL holds the oldest files of all: a global oldest-first trim would take them first.
    small = [write(root / OLD_DAY / "SMALL" / f"{i}.out", 1000, age_s=6 * DAY - i) for i in range(2)]
    mid = [write(root / "2020-01-02" / "MID" / f"{i}.out", 1000, age_s=5 * DAY - i) for i in range(3)]
    big = [write(root / "2020-01-03" / "BIG" / f"{i}.out", 1000, age_s=4 * DAY - i * 60) for i in range(10)]
    policy = LogPolicy(max_age_days=None, watch_filesystem=False, budget_bytes=10_000)

    report = clean_logs(root, policy, now=NOW)

    # Tree 15,000 B > 90% of 10,000: the goal is 80% = 8,000 B. Water-filling gives SMALL 2,000 and MID 3,000
    # (all they hold) and leaves BIG a share of 3,000: its 7 oldest files go, nobody else's.
    assert all(p.exists() for p in small + mid)
    assert [p.exists() for p in big] == [False] * 7 + [True] * 3
    assert report.watermark is not None
    assert report.watermark["goal_bytes"] == 8000
    assert report.watermark["share_bytes"] == 3000
    assert report.watermark["freed_bytes"] == 7000
    assert report.watermark["shortfall_bytes"] == 0
    assert report.queues["BIG"].removed_files == {WATERMARK: 7}
    assert report.queues["SMALL"].removed_files == {}
    assert report.queues["MID"].removed_files == {}
    assert report.queues["SMALL"].kept_bytes == 2000


def test_filesystem_watermark_frees_what_the_disk_needs_fairly(root: Path) -> None:
    a = [write(root / OLD_DAY / "A" / f"{i}.out", 1000, age_s=3 * DAY - i) for i in range(16)]
    b = [write(root / OLD_DAY / "B" / f"{i}.out", 1000, age_s=9 * DAY - i) for i in range(4)]

    def usage(path: Path) -> tuple[int, int]:
        assert path == root
        return 100_000, 85_000 + 10_000  # 95% full; 80% means freeing 15,000 B of the 20,000 B tree

    policy = LogPolicy(max_age_days=None, high_watermark_pct=90, low_watermark_pct=80)
    report = clean_logs(root, policy, now=NOW, disk_usage=usage)

    # Goal 5,000 B: B (4,000 B) is cut to a share of 2,500 B too, as both queues are over it.
    assert report.watermark["reasons"] == ["filesystem 95.0% full > 90%"]
    assert report.watermark["goal_bytes"] == 5000
    assert report.watermark["share_bytes"] == 2500
    assert sum(p.exists() for p in a) == 2 and all(p.exists() for p in a[-2:])
    assert sum(p.exists() for p in b) == 2 and all(p.exists() for p in b[-2:])


def test_filesystem_under_the_high_watermark_removes_nothing(root: Path) -> None:
    files = [write(root / OLD_DAY / "A" / f"{i}.out", 1000) for i in range(5)]
    report = clean_logs(root, LogPolicy(max_age_days=None), now=NOW, disk_usage=lambda _: (100_000, 89_000))
    assert all(p.exists() for p in files)
    assert report.watermark is None
    assert report.removed_files == 0


def test_live_files_are_never_removed_and_the_shortfall_is_reported(root: Path) -> None:
    old = [write(root / OLD_DAY / "BUSY" / f"{i}.out", 1000, age_s=DAY) for i in range(2)]
    live = [write(root / TODAY / "BUSY" / f"{i}.out", 1000, age_s=60) for i in range(4)]
    quiet = [write(root / OLD_DAY / "QUIET" / f"{i}.out", 1000, age_s=2 * DAY) for i in range(2)]
    policy = LogPolicy(max_age_days=0, live_minutes=10, watch_filesystem=False, budget_bytes=2000)

    report = clean_logs(root, policy, now=NOW)

    # max_age_days=0 removes every file that is not live; the live ones stay whatever the budget says.
    assert not any(p.exists() for p in old + quiet)
    assert all(p.exists() for p in live)
    assert report.queues["BUSY"].removed_files == {AGE: 2}
    assert report.queues["BUSY"].skipped_live == 4
    assert report.watermark["shortfall_bytes"] == 4000 - 1600
    assert (root / TODAY / "BUSY").is_dir()


def test_symlinks_are_never_followed_and_stay(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    target_file = write(outside / "precious.out")
    target_dir_file = write(outside / "dir" / "precious.out")
    write(outside / "day" / "Q" / "precious.out")
    (root / OLD_DAY / "Q").mkdir(parents=True)
    (root / OLD_DAY / "Q" / "link.out").symlink_to(target_file)
    (root / OLD_DAY / "LINKQ").symlink_to(outside / "dir", target_is_directory=True)
    (root / "2020-01-05").symlink_to(outside / "day", target_is_directory=True)
    age_dirs(root)

    report = clean_logs(root, LogPolicy(max_age_days=1, live_minutes=0, budget_bytes=1), now=NOW)

    assert report.symlinks_ignored == 3
    assert target_file.exists() and target_dir_file.exists() and (outside / "day" / "Q" / "precious.out").exists()
    assert (root / OLD_DAY / "Q" / "link.out").is_symlink()
    assert (root / OLD_DAY / "LINKQ").is_symlink() and (root / "2020-01-05").is_symlink()
    assert report.removed_files == 0
    assert report.errors == []


def test_a_directory_swapped_for_a_symlink_mid_run_cannot_be_reached(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    victims = [write(outside / f"{i}.out", 1000) for i in range(3)]
    for i in range(3):
        write(root / OLD_DAY / "Q" / f"{i}.out", 1000)

    def swap_then_report_full(path: Path) -> tuple[int, int]:
        """Runs between the scan and the watermark pass: the queue directory becomes a symlink out."""
        queue_dir = root / OLD_DAY / "Q"
        for child in queue_dir.iterdir():
            child.unlink()
        queue_dir.rmdir()
        queue_dir.symlink_to(outside, target_is_directory=True)
        return 10_000, 9_900

    report = clean_logs(root, LogPolicy(max_age_days=None), now=NOW, disk_usage=swap_then_report_full)

    assert all(p.exists() for p in victims)
    assert report.removed_files == 0
    assert len(report.errors) == report.error_count == 3
    assert all("not removed" in e for e in report.errors)


def test_nothing_outside_the_layout_or_the_root_is_touched(tmp_path: Path, root: Path) -> None:
    sibling = write(tmp_path / "logs-old" / OLD_DAY / "Q" / "1.out")  # shares the root's name as a prefix
    parent_file = write(tmp_path / "1.out")
    at_root = write(root / "notes.txt")
    not_a_date = write(root / "state" / "Q" / "1.out")
    at_date_level = write(root / OLD_DAY / "stray.out")
    inside = write(root / OLD_DAY / "Q" / "1.out")

    report = clean_logs(root, LogPolicy(max_age_days=1, budget_bytes=1), now=NOW)

    assert not inside.exists()
    assert all(p.exists() for p in (sibling, parent_file, at_root, not_a_date, at_date_level))
    assert report.removed_files == 1
    assert (root / OLD_DAY).is_dir(), "still holds the stray file"


def test_empty_directories_of_today_and_fresh_ones_stay(root: Path) -> None:
    (root / TODAY / "Q").mkdir(parents=True)
    (root / OLD_DAY / "Q" / "old-empty").mkdir(parents=True)
    age_dirs(root)
    (root / OLD_DAY / "Q" / "fresh-workdir").mkdir()  # a pilot just made it

    report = clean_logs(root, LogPolicy(max_age_days=1, live_minutes=30, **NO_WATERMARK), now=NOW)

    assert (root / TODAY / "Q").is_dir()
    assert (root / OLD_DAY / "Q" / "fresh-workdir").is_dir()
    assert not (root / OLD_DAY / "Q" / "old-empty").exists()
    assert report.dirs_removed == 1


def test_missing_root_is_reported_and_a_file_root_refused(tmp_path: Path) -> None:
    report = clean_logs(tmp_path / "nope", LogPolicy(**NO_WATERMARK), now=NOW)
    assert report.root_exists is False
    assert "does not exist" in report.summary_lines()[0]
    with pytest.raises(NotADirectoryError, match="not a directory"):
        clean_logs(write(tmp_path / "file"), LogPolicy(**NO_WATERMARK), now=NOW)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_age_days": -1}, "max_age_days"),
        ({"live_minutes": -5}, "live_minutes"),
        ({"low_watermark_pct": 95, "high_watermark_pct": 90}, "low_watermark_pct"),
        ({"high_watermark_pct": 120}, "high_watermark_pct"),
        ({"budget_bytes": 0}, "budget_bytes"),
    ],
)
def test_policy_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        LogPolicy(**kwargs)


def test_summary_names_every_queue_and_why(root: Path) -> None:
    write(root / OLD_DAY / "Q1" / "1.out", 2048)
    write(root / TODAY / "Q2" / "1.out", 10, age_s=60)
    lines = clean_logs(root, LogPolicy(max_age_days=1, **NO_WATERMARK), now=NOW).summary_lines()
    assert lines[0].startswith(f"log root {root}: removed 1 files (2.0 KiB) in 2 queues")
    assert "queue Q1: removed 1 files, 2.0 KiB (age 1 / 2.0 KiB); kept 0 files, 0 B" in lines
    assert "queue Q2: removed 0 files, 0 B; kept 1 files, 10 B" in lines


def test_fair_share_examples() -> None:
    assert fair_share({"a": 2000, "b": 3000, "c": 10_000}, 8000) == 3000
    assert fair_share({"a": 5000, "b": 5000}, 4000) == 2000
    assert fair_share({"a": 1, "b": 2}, 3) is None
    assert fair_share({"a": 10}, 0) == 0


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=30), st.integers(0, 10**10))
def test_fair_share_is_the_largest_share_that_fits(sizes: list[int], goal: int) -> None:
    queues = {str(i): s for i, s in enumerate(sizes)}
    share = fair_share(queues, goal)
    if share is None:
        assert sum(sizes) <= goal
        return
    assert sum(min(s, share) for s in sizes) <= goal
    assert sum(min(s, share + 1) for s in sizes) > goal
    assert any(s > share for s in sizes)
