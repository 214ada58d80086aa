"""Atomic writes under unique temporary names, and the removal of what dead processes left."""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from core import io
from core.data.cache import build_cache
from core.data.dataset import load_dataset
from ray_jobs import storage


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(done.stdout)


def temp_of(target: Path, pid: int, host: str = io.HOST) -> Path:
    """The temporary name a build of `target` by process `pid` on `host` gets."""
    return target.with_name(f".{target.name}.{host}.{pid}.k3x9_q2a{io.TEMP_SUFFIX}")


def in_threads(n: int, work) -> list[BaseException]:
    errors = []

    def run(i):
        try:
            work(i)
        except BaseException as e:  # noqa: BLE001 - collected, then asserted on
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_threads_writing_one_file_never_collide(tmp_path):
    target = tmp_path / "metrics.json"
    texts = [f"{i}\n" * 5000 for i in range(8)]
    assert in_threads(8, lambda i: io.write_text(target, texts[i])) == []
    assert target.read_text() in texts
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left


def test_atomic_write_fsyncs_before_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_size) or real_fsync(fd))
    io.write_text(tmp_path / "a.txt", "hello")
    assert synced == [5]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = io.write_text(tmp_path / "history.csv", "old\n")

    def crash(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(target, crash)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["history.csv"]


def test_temporaries_get_the_usual_mode_not_owner_only(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(io.write_text(tmp_path / "a.txt", "x").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(io.new_temp(tmp_path / "run", folder=True).stat().st_mode) == 0o777 & ~umask


def test_remove_stale_takes_only_a_dead_process_of_this_host(tmp_path):
    dead = dead_pid()
    stale_file = temp_of(tmp_path / "abc_224.npy", dead)
    stale_folder = temp_of(tmp_path / "cvae-key", dead)
    alive = temp_of(tmp_path / "abc_224.npy", os.getpid())
    elsewhere = temp_of(tmp_path / "abc_224.npy", dead, host="other-node")
    for path in (stale_file, alive, elsewhere):
        path.write_bytes(b"partial")
    stale_folder.mkdir()
    (stale_folder / "cvae_history.csv").write_text("x")
    (tmp_path / "abc_224.npy").write_bytes(b"a finished cache")

    assert sorted(io.remove_stale(tmp_path)) == sorted([stale_file, stale_folder])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["abc_224.npy", alive.name, elsewhere.name])


def test_a_stale_partial_cache_of_a_dead_process_is_removed_on_the_next_build(demo_root, tmp_path):
    ds = load_dataset(demo_root)
    ids = sorted(ds.images)[:3]
    leftover = temp_of(tmp_path / "0123456789abcdef0123_32.npy", dead_pid())
    leftover.write_bytes(b"\0" * 4096)  # a multi-GB build, killed

    cache = build_cache(ds, ids, 32, tmp_path)

    assert not leftover.exists()
    assert np.load(cache.path).shape == (3, 32, 32, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cache.path.name, f"{cache.path.stem}.ids.json"])


def test_storage_puts_under_unique_names(tmp_path):
    sources = []
    for i in range(6):
        sources.append(tmp_path / f"src{i}")
        sources[-1].write_text(f"{i}\n" * 2000)
    target = tmp_path / "sweep" / "summary.csv"
    assert in_threads(6, lambda i: storage.put_file(sources[i], str(target))) == []
    assert target.read_text() in [s.read_text() for s in sources]
    assert os.listdir(target.parent) == ["summary.csv"]


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_names_the_file_and_the_space_left_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = io.write_text(tmp_path / "summary.csv", "old\n")
    with pytest.raises(io.DiskFull, match=rf"no space left to write {re.escape(str(target))} \(\d+ MiB free there\); "
                                          r"the previous summary.csv, if any, is intact"):
        io.atomic_write(target, lambda tmp: no_space())
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["summary.csv"]
    monkeypatch.setattr(io.tempfile, "mkstemp", no_space)  # full before the temporary exists
    with pytest.raises(io.DiskFull, match="no space left to write"):
        io.write_text(target, "new\n")
    assert target.read_text() == "old\n"


def test_a_full_disk_while_storage_puts_a_file_names_it_and_keeps_the_old_one(tmp_path, monkeypatch):
    """summary.csv and sweep.json reach a local sweep folder through storage.put_file."""
    target, src = tmp_path / "sweep" / "summary.csv", tmp_path / "new.csv"
    storage.write_text(str(target), "old\n")
    src.write_text("new\n")
    monkeypatch.setattr(shutil, "copyfile", no_space)
    with pytest.raises(io.DiskFull, match=rf"no space left to write {re.escape(str(target))} \(\d+ MiB free there\)"):
        storage.put_file(src, str(target))
    assert target.read_text() == "old\n" and os.listdir(target.parent) == ["summary.csv"]


def test_a_full_disk_during_a_torch_save_is_named_too(tmp_path, monkeypatch):
    target = io.save_torch(tmp_path / "last.pt", {"epoch": 1})
    monkeypatch.setattr(Path, "write_bytes", no_space)
    with pytest.raises(io.DiskFull, match="last.pt"):
        io.save_torch(target, {"epoch": 2})
    assert torch.load(target, weights_only=True) == {"epoch": 1} and os.listdir(tmp_path) == ["last.pt"]
