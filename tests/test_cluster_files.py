"""The cluster files run as written: cluster.yaml passes Ray's schema and `ray up`'s checks, and it,
the Dockerfile and the KubeRay RayJob name the Ray release requirements.txt pins and install the
package by the step scripts/setup runs. (No Docker or Kubernetes here: the image is not built.)"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
RAYJOB = REPO / "kuberay" / "rayjob.yaml"
INSTALL = "EXTRAS=ray bash"  # the [ray] extra through scripts/install
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_matches_rays_schema(config):
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))


def test_cluster_yaml_passes_ray_up_validation(config):
    validate_config(prepare_config(config))  # what `ray up` runs, with the AWS defaults filled in


def ray_pin() -> SpecifierSet:
    (line,) = [r for r in (REPO / "requirements.txt").read_text().splitlines() if r.startswith("ray[")]
    return Requirement(line).specifier


def image_version(image: str) -> str:
    """The Ray release of a rayproject/ray image tag: 2.60.0 of rayproject/ray:2.60.0-py311-gpu."""
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py311-(cpu|gpu|cu\d+)", image)
    assert match, image
    return match.group(1)


def test_gpu_workers_autoscale_and_install_the_package(config):
    workers = config["available_node_types"]["gpu_worker"]
    assert config["provider"]["type"] == "aws"
    assert workers["max_workers"] > workers["min_workers"]
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any(INSTALL in command and "scripts/install" in command for command in config["setup_commands"])


def test_every_node_type_has_an_image_an_ami_and_an_instance_profile(config):
    docker = config["docker"]
    assert image_version(docker["head_image"]) in ray_pin() and image_version(docker["worker_image"]) in ray_pin()
    assert docker["worker_image"].endswith("-gpu")
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        assert node["ImageId"].startswith("resolve:ssm:/aws/service/deeplearning/ami/"), name
        assert node["IamInstanceProfile"]["Name"], name
    assert "# InstanceMarketOptions:" in CLUSTER_YAML.read_text()  # the spot option, commented


def test_the_dockerfile_is_rays_pinned_gpu_image_plus_the_setup_install():
    lines = (REPO / "Dockerfile").read_text().splitlines()
    (base,) = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert image_version(base) in ray_pin() and base.endswith("-gpu")
    assert any(line.startswith("RUN ") and INSTALL in line and "scripts/install" in line for line in lines)
    assert "EXTRAS=dev bash scripts/install" in (REPO / "scripts" / "setup").read_text()  # the same step


def test_the_rayjob_runs_the_sweep_on_the_image_with_a_gpu_worker_group():
    job = yaml.safe_load(RAYJOB.read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert shlex.split(job["spec"]["entrypoint"])[:2] == ["python", "ablations/run_all.py"]  # as ray_jobs.submit
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] in ray_pin()
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    (gpu,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu"]
    worker = gpu["template"]["spec"]["containers"][0]
    assert head["image"] == worker["image"] and worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert gpu["maxReplicas"] > gpu["minReplicas"]


def test_a_misspelt_key_is_caught(config):
    config["max_worker"] = config.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="'max_worker' was unexpected"):
        validate_config(prepare_config(config))
