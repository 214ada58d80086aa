"""Fault injection for the recovery tests: kill a Train worker once, at a chosen epoch.

Set DERMABLATE_KILL_AT_EPOCH=N and DERMABLATE_KILL_MARKER=PATH (a file that must not
exist yet) in the environment Ray starts its workers with. The first worker to finish
epoch N creates PATH and ends its process at once, as a crashed node would, before that
epoch's checkpoint is reported. Unset, this does nothing.
"""
from __future__ import annotations

import os

KILL_AT_EPOCH = "DERMABLATE_KILL_AT_EPOCH"
KILL_MARKER = "DERMABLATE_KILL_MARKER"


def maybe_kill(epoch: int, who: str = "") -> None:
    """`who` (the arm) is written into the marker, so a test knows which trial died."""
    if os.environ.get(KILL_AT_EPOCH) != str(epoch):
        return
    try:  # O_EXCL: exactly one process, once, however many workers or retries get here
        fd = os.open(os.environ[KILL_MARKER], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, who.encode())
    os.close(fd)
    os._exit(1)
