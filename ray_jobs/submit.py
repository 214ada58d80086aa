"""Run a sweep on a Ray cluster as a Ray Job, follow its log, and exit with its status.

    python -m ray_jobs.submit --address http://HEAD:8265 -- --data-root /shared/ham10000 --results s3://bucket/sweeps

Everything after `--` goes to `ablations/run_all.py`, which runs on the head node in a
copy of this repository (the job's working_dir). That copy is temporary: --results must
be an absolute path on storage every node shares, or a URI, and --data-root absolute;
with --tracker mlflow, --tracking-uri (or $MLFLOW_TRACKING_URI) names a server or an
absolute sqlite://// path. The job gets this shell's WANDB_* and MLFLOW_* variables, and
with --tracker, requirements-tracking.txt too.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from core.log import add_verbosity_flags, setup_logging

REPO = Path(__file__).resolve().parents[1]
# Not uploaded with the code (Ray also leaves out .git, .venv and __pycache__). Anchored
# patterns: .gitignore's unanchored `data/` would drop core/data too, so it is not used.
EXCLUDES = ["/data", "/results", "/artifacts", ".pytest_cache", ".ruff_cache", "*.egg-info", "*.pyc"]
PATH_ARGS = ("--results", "--data-root", "--demo-data")  # must name the same place on every node
TRACKER_ENV = ("WANDB_", "MLFLOW_")  # the trackers' settings (mode, project, API key, tracking URI)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ray_jobs.submit", description=__doc__.split("\n\n")[0])
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265"),
                   help="the cluster's dashboard address (default $RAY_ADDRESS or http://127.0.0.1:8265)")
    p.add_argument("--no-pip", action="store_true",
                   help="do not pip-install requirements.txt for the job (a cluster from cluster.yaml has them)")
    p.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    p.add_argument("run_all_args", nargs=argparse.REMAINDER,
                   help="-- then the arguments of ablations/run_all.py (-q there: the job log holds the summary only)")
    return add_verbosity_flags(p)


def check_paths(args: list[str]) -> dict[str, str]:
    """The job runs in a temporary copy of the repository: relative result and data paths would vanish.

    Returns the path options given ({"--results": ..., ...}) once every one is absolute or a URI."""
    given = {}
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in PATH_ARGS:
            given[name] = value if eq else (args[i + 1] if i + 1 < len(args) else "")
    if "--results" not in given:
        raise SystemExit("error: give --results (an absolute path on shared storage, or a URI such as s3://...): "
                         "the job's working directory is a temporary copy")
    for name, value in given.items():
        if "://" not in value and not os.path.isabs(value):
            raise SystemExit(f"error: {name} {value!r} must be absolute (or a URI): the job runs elsewhere")
    return given


def option_values(args: list[str], name: str) -> list[str]:
    """Every value given to option `name` (`--name VALUE` or `--name=VALUE`)."""
    return [arg.partition("=")[2] if "=" in arg else (args[i + 1] if i + 1 < len(args) else "")
            for i, arg in enumerate(args) if arg.partition("=")[0] == name]


def check_tracking(args: list[str]) -> None:
    """MLflow's default store (mlflow.db in the current folder) would vanish with the job's copy."""
    if "mlflow" not in option_values(args, "--tracker"):
        return
    uri = (option_values(args, "--tracking-uri") or [os.environ.get("MLFLOW_TRACKING_URI", "")])[-1]
    if not uri or (uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")):
        raise SystemExit("error: --tracker mlflow in a job needs --tracking-uri: a tracking server, or "
                         "sqlite:////ABSOLUTE/PATH/mlflow.db on storage the head node keeps")


def runtime_env(pip: bool, trackers: bool = False) -> dict:
    from ray_jobs.sweep import git_commit
    from ray_jobs.trainable import WORKER_ENV

    env_vars = {name: value for name, value in os.environ.items() if name.startswith(TRACKER_ENV)}
    env = {"working_dir": str(REPO), "excludes": EXCLUDES,
           "env_vars": {**env_vars, **WORKER_ENV, "DERMABLATE_GIT_COMMIT": git_commit() or ""}}  # the copy has no .git
    if pip:
        files = ["requirements.txt"] + (["requirements-tracking.txt"] if trackers else [])
        lines = [line.split("#")[0].strip() for name in files for line in (REPO / name).read_text().splitlines()]
        env["pip"] = [line for line in lines if line]
    return env


async def follow(client: JobSubmissionClient, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args)
    os.environ["RAY_RUNTIME_ENV_IGNORE_GITIGNORE"] = "1"  # EXCLUDES decides what the job's copy leaves out
    run_all_args = args.run_all_args[1:] if args.run_all_args[:1] == ["--"] else args.run_all_args
    check_paths(run_all_args)
    check_tracking(run_all_args)
    # 1. Connect to the cluster's job server (the dashboard).
    client = JobSubmissionClient(args.address)
    # 2. Submit: run_all.py in a copy of this repository, with its requirements.
    job_id = client.submit_job(entrypoint=shlex.join(["python", "ablations/run_all.py", *run_all_args]),
                               runtime_env=runtime_env(not args.no_pip, bool(option_values(run_all_args, "--tracker"))))
    print(f"submitted {job_id} to {args.address}", flush=True)
    if args.no_wait:
        return 0
    # 3. Follow its log to the end, then return its exit status.
    asyncio.run(follow(client, job_id))
    info = client.get_job_info(job_id)
    print(f"job {job_id}: {info.status}", flush=True)
    if info.driver_exit_code is not None:
        return info.driver_exit_code
    return 0 if info.status == JobStatus.SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
