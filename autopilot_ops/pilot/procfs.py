"""The resident memory of a process tree, read from Linux's ``/proc`` (the pilot needs no ``psutil``)."""

from __future__ import annotations

import os

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _stat_fields(pid: str, proc: str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rfind(b")") + 2 :].decode("ascii", "replace").split()


def _resident_pages(pid: int, proc: str) -> int:
    """The resident pages of ``pid`` (``/proc/<pid>/statm``, what ``psutil``'s ``memory_info().rss`` reads)."""
    try:
        with open(f"{proc}/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_kb(root: int, proc: str = "/proc") -> int:
    """RSS in kB of ``root`` and all its live descendants (0 when ``root`` is gone), as the sum of ``psutil``'s
    ``memory_info().rss`` over ``Process(root)`` and its ``children(recursive=True)``."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(name, proc)
        if fields is not None and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += _resident_pages(pid, proc)
        todo.extend(children.get(pid, ()))
    return total * _PAGE_KB
