"""One live writer per sweep folder: a second sweep (or --resume) on a folder another live
process holds is refused before the caches and Ray, naming the holder; a killed holder blocks nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ablations import run_all
from core.data.dataset import load_dataset
from ray_jobs.lock import LOCK_FILE
from ray_jobs.sweep import Sweep
from tests.test_preflight import ReachedRay, stop_before_ray

HOLD = textwrap.dedent("""
    import sys, time
    from ray_jobs.lock import sweep_lock
    with sweep_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of tmp_path/results/smoke, as a running sweep does."""
    folder = tmp_path / "results" / "smoke"
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert process.stdout.readline().strip() == "held"
    yield process, folder
    process.kill()
    process.wait()


def test_a_second_sweep_on_a_held_folder_is_refused_before_ray_naming_the_holder(holder, demo_root, tmp_path,
                                                                                monkeypatch, capsys):
    process, folder = holder
    stop_before_ray(monkeypatch)
    results = ["--results", str(tmp_path / "results")]

    def refused(*args: str) -> None:
        assert run_all.main([*results, *args]) == 2
        err = capsys.readouterr().err
        assert f"{folder} is in use by another sweep" in err and f'"pid": {process.pid}' in err, err
        assert "choose another --results or --name, or --resume it once that process is gone" in err

    # The first sweep has not written its sweep.json yet:
    refused("--profile", "smoke", "--arms", "baseline", "--data-root", str(demo_root))
    assert [p.name for p in folder.iterdir()] == [LOCK_FILE]
    first = Sweep(results=str(folder), profile="smoke", data_root=str(demo_root), arms=["baseline"])
    record = json.dumps({"settings": first.to_dict(), "status": "running",
                         "data_fingerprint": load_dataset(demo_root).fingerprint()})
    (folder / "sweep.json").write_text(record)  # now it has
    refused("--name", "smoke", "--resume")
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE, "sweep.json"]
    assert (folder / "sweep.json").read_text() == record
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == process.pid


def test_a_holder_killed_with_sigkill_blocks_neither_a_new_sweep_nor_resume(holder, demo_root, tmp_path,
                                                                           monkeypatch):
    process, folder = holder
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    stop_before_ray(monkeypatch)
    with pytest.raises(ReachedRay):  # past the lock, the data check and the caches' planning, at Ray's start
        run_all.main(["--profile", "smoke", "--results", str(tmp_path / "results"), "--arms", "baseline",
                      "--data-root", str(demo_root)])
    assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
