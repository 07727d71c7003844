"""Remove pilot logs by age and by a disk-usage watermark, one directory per queue.

Layout (``PilotSpec.log_dir``): ``<log_root>/<YYYY-MM-DD>/<queue>/...``. Only directories named like a date
are entered, and everything under ``<date>/<queue>/`` belongs to that queue (reports name a queue by its
directory, ``safe_name(queue)``). Anything else in the root is not ours and is never touched.

The passes follow Airflow's ``scripts/docker/clean-logs.sh`` (old files first, then empty directories), with a
watermark pass in between:

1. **Age**: files last modified more than ``max_age_days`` ago are removed.
2. **Watermark**: runs when the filesystem holding the root is more than ``high_watermark_pct`` full, or the
   tree is over ``high_watermark_pct`` of ``budget_bytes``. The goal is a tree small enough to bring usage back
   to ``low_watermark_pct`` (of the filesystem or of the budget; when both apply, the smaller goal wins).
   The goal is shared out between queues max-min fairly ("water-filling"): one per-queue share ``c`` is found
   such that ``sum(min(size_q, c)) == goal``. A queue at or under its share is not touched. A queue over its
   share is trimmed down to it, oldest files first, and only its own files are removed. So a queue that grows
   pays for that growth with its own files and never makes room at another queue's expense. The part of a
   share that a small queue does not use goes to the other queues. Live files (below) are never removed. A
   queue whose bytes are mostly live may stay over its share. The shortfall is then reported and is not taken
   from other queues.
3. **Empty directories** left under date directories are removed, except under today's date (UTC) or later,
   where back ends create the directories they submit into, and except directories changed within the live
   window (a pilot may have just made its work directory).

Safety: the tree is walked without following symlinks, and symlinks stay where they are (the report counts
them). Every removal goes down from the root through directory descriptors opened with ``O_NOFOLLOW``, and
checks the entry again just before removing it. So if a directory is swapped for a symlink while the cleanup
runs, that removal fails instead of reaching outside the root. Files modified in the last ``live_minutes`` are
taken to be still written by a live pilot and are skipped. Sizes are apparent sizes (``st_size``).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AGE, WATERMARK = "age", "watermark"
#: Errors kept word for word in a report; the rest are only counted.
MAX_ERRORS_LISTED = 100
_DATE_DIR = re.compile(r"\d{4}-\d{2}-\d{2}")

#: ``(total, used)`` bytes of the filesystem holding a path.
DiskUsage = Callable[[Path], tuple[int, int]]


def filesystem_usage(path: Path) -> tuple[int, int]:
    usage = shutil.disk_usage(path)
    return usage.total, usage.used


@dataclass(frozen=True)
class LogPolicy:
    """What to remove. ``max_age_days=None`` turns the age pass off. ``watch_filesystem=False`` with no
    ``budget_bytes`` turns the watermark pass off."""

    max_age_days: float | None = 7.0
    live_minutes: float = 30.0
    high_watermark_pct: float = 90.0
    low_watermark_pct: float = 80.0
    watch_filesystem: bool = True
    budget_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_age_days is not None and self.max_age_days < 0:
            raise ValueError(f"log policy: field 'max_age_days' must be >= 0, not {self.max_age_days}")
        if self.live_minutes < 0:
            raise ValueError(f"log policy: field 'live_minutes' must be >= 0, not {self.live_minutes}")
        if not 0 < self.low_watermark_pct <= self.high_watermark_pct <= 100:
            raise ValueError(
                "log policy: fields 'low_watermark_pct' and 'high_watermark_pct' need 0 < low <= high <= 100, "
                f"not low={self.low_watermark_pct}, high={self.high_watermark_pct}"
            )
        if self.budget_bytes is not None and self.budget_bytes <= 0:
            raise ValueError(f"log policy: field 'budget_bytes' must be > 0, not {self.budget_bytes}")


@dataclass
class QueueLogReport:
    """One queue's outcome: files and bytes removed by reason, files skipped as live, and what is left."""

    removed_files: dict[str, int] = field(default_factory=dict)
    removed_bytes: dict[str, int] = field(default_factory=dict)
    skipped_live: int = 0
    kept_files: int = 0
    kept_bytes: int = 0

    def count_removed(self, reason: str, size: int) -> None:
        self.removed_files[reason] = self.removed_files.get(reason, 0) + 1
        self.removed_bytes[reason] = self.removed_bytes.get(reason, 0) + size

    def summary(self) -> str:
        files, size = sum(self.removed_files.values()), sum(self.removed_bytes.values())
        why = ", ".join(
            f"{reason} {n} / {human_bytes(self.removed_bytes[reason])}" for reason, n in self.removed_files.items()
        )
        text = f"removed {files} files, {human_bytes(size)}" + (f" ({why})" if why else "")
        text += f"; kept {self.kept_files} files, {human_bytes(self.kept_bytes)}"
        return text + (f"; {self.skipped_live} live skipped" if self.skipped_live else "")


@dataclass
class LogCleanupReport:
    """What one cleanup did, per queue, and why."""

    log_root: str
    root_exists: bool = True
    queues: dict[str, QueueLogReport] = field(default_factory=dict)
    watermark: dict[str, Any] | None = None
    dirs_removed: int = 0
    symlinks_ignored: int = 0
    errors: list[str] = field(default_factory=list)
    error_count: int = 0

    def queue(self, name: str) -> QueueLogReport:
        return self.queues.setdefault(name, QueueLogReport())

    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_LISTED:
            self.errors.append(message)

    @property
    def removed_files(self) -> int:
        return sum(sum(q.removed_files.values()) for q in self.queues.values())

    @property
    def removed_bytes(self) -> int:
        return sum(sum(q.removed_bytes.values()) for q in self.queues.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "log_root": self.log_root,
            "root_exists": self.root_exists,
            "removed_files": self.removed_files,
            "removed_bytes": self.removed_bytes,
            "dirs_removed": self.dirs_removed,
            "symlinks_ignored": self.symlinks_ignored,
            "watermark": self.watermark,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "queues": {
                name: {
                    "removed_files": dict(q.removed_files),
                    "removed_bytes": dict(q.removed_bytes),
                    "skipped_live": q.skipped_live,
                    "kept_files": q.kept_files,
                    "kept_bytes": q.kept_bytes,
                }
                for name, q in sorted(self.queues.items())
            },
        }

    def summary_lines(self) -> list[str]:
        if not self.root_exists:
            return [f"log root {self.log_root} does not exist: nothing to clean"]
        lines = [
            f"log root {self.log_root}: removed {self.removed_files} files ({human_bytes(self.removed_bytes)}) "
            f"in {len(self.queues)} queues, {self.dirs_removed} empty directories; "
            f"{self.symlinks_ignored} symlinks left alone"
        ]
        if self.watermark:
            w = self.watermark
            lines.append(
                f"watermark: {'; '.join(w['reasons'])}: goal {human_bytes(w['goal_bytes'])} for the tree, "
                f"share {human_bytes(w['share_bytes'])} per queue, freed {human_bytes(w['freed_bytes'])}, "
                f"short by {human_bytes(w['shortfall_bytes'])}"
            )
        lines += [f"queue {name}: {q.summary()}" for name, q in sorted(self.queues.items())]
        return lines


def fair_share(sizes: Mapping[str, int], goal: int) -> int | None:
    """The per-queue share ``c`` with ``sum(min(size, c)) <= goal`` and as large as possible (max-min fair);
    ``None`` when every queue fits whole."""
    ordered = sorted(sizes.values())
    remaining = goal
    for i, size in enumerate(ordered):
        share = remaining // (len(ordered) - i)
        if size > share:
            return share
        remaining -= size
    return None


def clean_logs(
    root: str | Path,
    policy: LogPolicy | None = None,
    *,
    now: float | None = None,
    disk_usage: DiskUsage = filesystem_usage,
) -> LogCleanupReport:
    """Run the age pass, the watermark pass and the empty-directory pass on ``root``."""
    policy = policy or LogPolicy()
    root = Path(root)
    report = LogCleanupReport(str(root))
    if not root.exists():
        report.root_exists = False
        return report
    if not root.is_dir():
        raise NotADirectoryError(f"log_root {root}: not a directory")
    now = time.time() if now is None else now
    live_before = now - policy.live_minutes * 60
    files, dirs = _scan(root, report)
    with _RootDir(root) as tree:
        if policy.max_age_days is not None:
            age_before = min(live_before, now - policy.max_age_days * 86400)
            files = [f for f in files if f.mtime >= age_before or not _remove(tree, f, age_before, AGE, report)]
        plan = _watermark_plan(root, files, policy, disk_usage)
        if plan is not None:
            files = _trim_to_share(tree, files, plan["share_bytes"], live_before, report)
            plan["freed_bytes"] = sum(q.removed_bytes.get(WATERMARK, 0) for q in report.queues.values())
            plan["shortfall_bytes"] = max(0, sum(f.size for f in files) - plan["goal_bytes"])
            report.watermark = plan
        for f in files:
            kept = report.queue(f.queue)
            kept.kept_files += 1
            kept.kept_bytes += f.size
        today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date().isoformat()
        old_dirs = [parts for parts, mtime in dirs if parts[0] < today and mtime < live_before]
        report.dirs_removed = _remove_empty_dirs(tree, old_dirs, report)
    return report


@dataclass(frozen=True, slots=True)
class _File:
    queue: str
    parts: tuple[str, ...]  # path under the root
    size: int
    mtime: float


def _scan(root: Path, report: LogCleanupReport) -> tuple[list[_File], list[tuple[tuple[str, ...], float]]]:
    """Regular files under ``<date>/<queue>/``, and the date directories and all below them, with their mtimes."""
    files: list[_File] = []
    dirs: list[tuple[tuple[str, ...], float]] = []
    stack: list[tuple[tuple[str, ...], str]] = [((), str(root))]
    while stack:
        parts, path = stack.pop()
        for entry in _entries(path, report):
            if not parts and not _DATE_DIR.fullmatch(entry.name):
                continue
            child = (*parts, entry.name)
            try:
                if _is_real_dir(entry, report):
                    dirs.append((child, entry.stat(follow_symlinks=False).st_mtime))
                    stack.append((child, entry.path))
                elif len(parts) >= 2 and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    files.append(_File(parts[1], child, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue
    return files, dirs


def _entries(path: str, report: LogCleanupReport) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except FileNotFoundError:
        return []
    except OSError as exc:
        report.error(f"{path}: cannot list: {exc.strerror or exc}")
        return []


def _is_real_dir(entry: os.DirEntry[str], report: LogCleanupReport) -> bool:
    if entry.is_symlink():
        report.symlinks_ignored += 1
        return False
    return entry.is_dir(follow_symlinks=False)


def _remove(tree: _RootDir, f: _File, stale_before: float, reason: str, report: LogCleanupReport) -> bool:
    """Remove ``f`` if it is still a regular file untouched since ``stale_before``; ``True`` once it is gone."""
    try:
        size = tree.remove_file(f.parts, stale_before)
    except FileNotFoundError:
        return True
    except OSError as exc:
        report.error(f"{'/'.join(f.parts)}: not removed: {exc.strerror or exc}")
        return False
    if size is None:
        report.queue(f.queue).skipped_live += 1
        return False
    report.queue(f.queue).count_removed(reason, size)
    return True


def _watermark_plan(root: Path, files: list[_File], policy: LogPolicy, disk_usage: DiskUsage) -> dict[str, Any] | None:
    """Why the watermark pass runs, the tree size it aims at, and each queue's share; ``None`` if it need not."""
    tree_bytes = sum(f.size for f in files)
    high, low = policy.high_watermark_pct, policy.low_watermark_pct
    reasons: list[str] = []
    goals: list[int] = []
    if policy.watch_filesystem:
        total, used = disk_usage(root)
        if total > 0 and used * 100 > total * high:
            reasons.append(f"filesystem {100 * used / total:.1f}% full > {high:g}%")
            goals.append(tree_bytes - (used - int(total * low / 100)))
    if policy.budget_bytes and tree_bytes * 100 > policy.budget_bytes * high:
        reasons.append(f"log tree {human_bytes(tree_bytes)} > {high:g}% of budget {human_bytes(policy.budget_bytes)}")
        goals.append(int(policy.budget_bytes * low / 100))
    if not reasons:
        return None
    goal = max(0, min(goals))
    sizes: dict[str, int] = {}
    for f in files:
        sizes[f.queue] = sizes.get(f.queue, 0) + f.size
    share = fair_share(sizes, goal)
    return {
        "reasons": reasons,
        "tree_bytes": tree_bytes,
        "goal_bytes": goal,
        "share_bytes": tree_bytes if share is None else share,
    }


def _trim_to_share(
    tree: _RootDir, files: list[_File], share: int, live_before: float, report: LogCleanupReport
) -> list[_File]:
    """Remove each queue's oldest files until the queue is within ``share``; the files kept."""
    by_queue: dict[str, list[_File]] = {}
    for f in files:
        by_queue.setdefault(f.queue, []).append(f)
    kept: list[_File] = []
    for queue, queue_files in by_queue.items():
        size = sum(f.size for f in queue_files)
        for f in sorted(queue_files, key=lambda f: f.mtime):
            if size <= share:
                kept.append(f)
            elif f.mtime >= live_before:
                report.queue(queue).skipped_live += 1
                kept.append(f)
            elif _remove(tree, f, live_before, WATERMARK, report):
                size -= f.size
            else:
                kept.append(f)
    return kept


def _remove_empty_dirs(tree: _RootDir, dirs: list[tuple[str, ...]], report: LogCleanupReport) -> int:
    """Remove the directories in ``dirs`` that are empty, deepest first; how many went."""
    removed = 0
    for parts in sorted(dirs, key=len, reverse=True):
        try:
            removed += tree.remove_empty_dir(parts)
        except FileNotFoundError:
            continue
        except OSError as exc:
            report.error(f"{'/'.join(parts)}: not removed: {exc.strerror or exc}")
    return removed


class _RootDir:
    """Removes entries under the root through directory descriptors opened without following symlinks."""

    _FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

    def __init__(self, root: Path):
        self._root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._last: tuple[tuple[str, ...], int] | None = None  # the last directory opened, reused

    def remove_file(self, parts: tuple[str, ...], stale_before: float) -> int | None:
        """Unlink a regular file not modified since ``stale_before``; its size, or ``None`` if it is live now."""
        fd = self._parent(parts)
        st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_mtime >= stale_before:
            return None
        os.unlink(parts[-1], dir_fd=fd)
        return st.st_size

    def remove_empty_dir(self, parts: tuple[str, ...]) -> bool:
        """``rmdir`` a real directory if it is empty (``rmdir`` never follows a symlink)."""
        fd = self._parent(parts)
        if not stat.S_ISDIR(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
            return False
        try:
            os.rmdir(parts[-1], dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    def _parent(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the directory holding ``parts``, kept open for the next call on the same one."""
        parent = parts[:-1]
        if self._last is None or self._last[0] != parent:
            fd = os.dup(self._root_fd)
            try:
                for name in parent:
                    child = os.open(name, self._FLAGS, dir_fd=fd)
                    os.close(fd)
                    fd = child
            except BaseException:
                os.close(fd)
                raise
            self._forget()
            self._last = (parent, fd)
        return self._last[1]

    def _forget(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def __enter__(self) -> _RootDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self._forget()
        os.close(self._root_fd)


def human_bytes(n: float) -> str:
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
