"""One live writer per sweep folder: an OS file lock, held for the sweep's whole life.

`fcntl.flock` on `<sweep>/.sweep.lock`: the kernel drops it when the holder exits, however
it dies (SIGKILL included), so a lock is never stale and nobody clears one by hand. The
file says who holds it (host, pid, start time) for the message a second sweep gets. On NFS
the lock is the server's (Linux maps flock to NFS byte-range locks); on object storage
(s3://, gs://, ...) there is no file lock, and the sweep says that nothing guards the folder.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from core.config import ConfigError

LOCK_FILE = ".sweep.lock"

log = logging.getLogger(__name__)


@contextmanager
def sweep_lock(results: str) -> Iterator[None]:
    """Hold `results`' lock until the block ends; raises ConfigError, naming the holder, when another has it."""
    if "://" in results:
        log.warning("%s is object storage: no file lock there, so nothing stops a second sweep writing into it "
                    "at the same time (the one-writer guard covers local and NFS folders)", results)
        yield
        return
    folder = Path(results)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has not yet written its name"
            raise ConfigError(f"{results} is in use by another sweep ({holder}): wait for it to end, choose another "
                             "--results or --name, or --resume it once that process is gone") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                            "started": datetime.now(UTC).isoformat(timespec="seconds")}))
        f.flush()
        yield
