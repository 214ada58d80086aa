"""cluster.yaml is a valid Ray cluster-launcher config: Ray's JSON schema and its own checks."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CLUSTER_YAML = Path(__file__).resolve().parents[1] / "cluster.yaml"
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_matches_rays_schema(config):
    jsonschema.validate(config, json.loads(SCHEMA.read_text()))


def test_cluster_yaml_passes_ray_up_validation(config):
    validate_config(prepare_config(config))  # what `ray up` runs, with the AWS defaults filled in


def test_gpu_workers_autoscale_and_install_the_requirements(config):
    workers = config["available_node_types"]["gpu_worker"]
    assert config["provider"]["type"] == "aws"
    assert workers["max_workers"] > workers["min_workers"]
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("requirements.txt" in command for command in config["setup_commands"])


def test_a_misspelt_key_is_caught(config):
    config["max_worker"] = config.pop("max_workers")
    with pytest.raises(jsonschema.ValidationError, match="'max_worker' was unexpected"):
        validate_config(prepare_config(config))
