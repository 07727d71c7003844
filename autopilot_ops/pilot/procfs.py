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


def tree_rss_kb(root: int, proc: str = "/proc") -> int:
    """RSS in kB of ``root`` and all its live descendants (0 when ``root`` is gone), as ``psutil``'s
    ``memory_info().rss`` of each: the ``rss`` field of ``/proc/<pid>/stat`` in pages."""
    children: dict[int, list[int]] = {}
    rss_pages: dict[int, int] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return 0
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(name, proc)
        if fields is None or len(fields) < 22:
            continue
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss_pages[pid] = int(fields[21])
    if root not in rss_pages:
        return 0
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss_pages.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total * _PAGE_KB
