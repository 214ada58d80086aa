"""Atomic file writes: write under a temporary name beside the target, fsync, then rename over it.

A crash mid-write leaves the previous file (or none), never half a file. Temporary names
are unique to the thread, process and machine (tempfile.mkstemp, in the target's own
folder so the rename never crosses file systems), and record the host and pid that own
them: `remove_stale` deletes the ones whose process has died, such as a multi-GB image
cache whose build was killed.
"""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, quota exceeded
# mkstemp and mkdtemp create owner-only files and folders; the results and caches they become
# are read by others (a dashboard, another user of a shared cache), so they get the usual mode.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
# No dots in the host part, so that a temporary name parses back (see _TEMP_NAME).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "localhost"
_TEMP_NAME = re.compile(rf"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.\w+{re.escape(TEMP_SUFFIX)}$")


def _prefix(name: str) -> str:
    return f".{name}.{HOST}.{os.getpid()}."


def temp_name(name: str) -> str:
    """A temporary name for the file `name`, for storage where `new_temp` cannot create one (cloud storage)."""
    return f"{_prefix(name)}{secrets.token_hex(4)}{TEMP_SUFFIX}"


def new_temp(target: str | Path, folder: bool = False) -> Path:
    """A new empty file (or, with `folder`, directory) beside `target`, under a name nobody else can take."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    where = {"prefix": _prefix(target.name), "suffix": TEMP_SUFFIX, "dir": target.parent}
    if folder:
        path = Path(tempfile.mkdtemp(**where))
        path.chmod(0o777 & ~_UMASK)
        return path
    fd, name = tempfile.mkstemp(**where)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


class DiskFull(OSError):
    """A write that found no space left: it names the file and the space that is left."""


def disk_full(path: Path, error: OSError) -> DiskFull:
    try:
        left = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        left = "the free space could not be read"
    full = DiskFull(f"no space left to write {path} ({left}); the previous {path.name}, if any, is intact: free "
                    "some space, then run the command again (a sweep continues with --resume)")
    full.errno = error.errno  # set after: OSError(errno, text) would print as "[Errno 28] text"
    return full


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp_path)`, fsync tmp_path, then move it onto `path`; DiskFull when the disk is full."""
    path = Path(path)
    try:
        tmp = new_temp(path)
    except OSError as e:
        raise (disk_full(path, e) if e.errno in FULL else e) from None
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.errno in FULL:
            raise disk_full(path, e) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_torch(path: str | Path, state: Any) -> Path:
    """torch.save, atomically. Serialised in memory first: torch's own writer reports a full disk as a
    RuntimeError without its errno, a plain file write as the OSError that atomic_write names."""
    import torch

    buffer = BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it on Windows: assume alive, remove nothing
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def remove_stale(folder: str | Path) -> list[Path]:
    """Delete the temporary files and folders in `folder` that a dead process of this host left; returns them.

    Another host's are left alone: its pids mean nothing here (a cache on a shared disk).
    """
    folder = Path(folder)
    stale = []
    for entry in folder.iterdir() if folder.is_dir() else []:
        match = _TEMP_NAME.match(entry.name)
        if match and match["host"] == HOST and not pid_alive(int(match["pid"])):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            stale.append(entry)
    return stale


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: str | Path, frame) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
