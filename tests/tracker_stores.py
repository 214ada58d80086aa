"""Reading back what the experiment trackers wrote, each with its own library's reader.

MLflow through `mlflow.search_runs` and its client, TensorBoard through its event
reader, and a W&B offline run through its record file (`run-<id>.wandb`: LevelDB log
blocks of W&B's protobuf records, which `wandb sync` uploads), parsed with W&B's own
protobuf classes.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pandas as pd


def mlflow_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow.search_runs(experiment_names=[experiment])


def mlflow_history(tracking_uri: str, run_id: str, metric: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri).get_metric_history(run_id, metric))


def mlflow_artifacts(tracking_uri: str, run_id: str) -> list[str]:
    from mlflow import MlflowClient

    return sorted(a.path for a in MlflowClient(tracking_uri).list_artifacts(run_id))


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in `logdir`: tag -> [(step, value), ...] in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return {tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]}


def tensorboard_text(logdir: Path, tag: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logdir))
    events.Reload()
    return events.Tensors(tag)[0].tensor_proto.string_val[0].decode()


def wandb_records(run_file: Path) -> list:
    """The records of a W&B run file: a 7-byte header, then 32 KiB blocks of LevelDB log records."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, pending, records = run_file.read_bytes(), 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a record header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run(folder: Path) -> dict:
    """The offline run under `folder` (its wandb/ directory): name, config, history by step, artifacts, exit code."""
    (run_file,) = Path(folder).glob("offline-run-*/run-*.wandb")
    run = {"name": None, "config": {}, "history": {}, "artifacts": {}, "exit_code": None}
    for record in wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["name"] = record.run.display_name
            run["config"].update(_values(record.run.config.update))
        elif kind == "config":
            run["config"].update(_values(record.config.update))
        elif kind == "history":
            items = _values(record.history.item)
            run["history"].setdefault(int(items["_step"]), {}).update(items)
        elif kind == "artifact":
            run["artifacts"][record.artifact.name] = sorted(m.path for m in record.artifact.manifest.contents)
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


def _values(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
