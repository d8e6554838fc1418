"""deploy/ manifests: valid against KServe's CRD schemas and Kubernetes' own, and a drop-in for
kserve-openvino (same args, protocols, formats, annotations and security context)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).with_name("kserve_crd")
RUNTIME = DEPLOY / "kserve" / "kserve-ovserve.yaml"
MANIFESTS = sorted(DEPLOY.rglob("*.yaml"))
KUBERNETES_VERSION = "1.32.0"


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@cache
def validator(kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    schema_file = SCHEMAS / f"{kind.lower()}.{api_version.rsplit('/', 1)[-1]}.schema.json"
    if not schema_file.exists():
        return None
    schema = json.loads(schema_file.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Messages from the KServe CRD schema, or kubernetes-validate for built-in kinds."""
    check = validator(doc["kind"], doc["apiVersion"])
    if check is not None:
        return [f"{e.json_path}: {e.message}" for e in check.iter_errors(doc)]
    assert "kserve" not in doc["apiVersion"], f"no schema for {doc['apiVersion']}"
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [str(error)]
    return []


def test_there_are_manifests() -> None:
    assert RUNTIME in MANIFESTS
    assert len(MANIFESTS) >= 4


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_is_valid(path: Path) -> None:
    for doc in documents(path):
        assert schema_errors(doc) == [], f"{path.name}: {doc['kind']}"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda doc: doc["spec"]["containers"][0].update(argz=[]), "'argz' was unexpected"),
        (
            lambda doc: doc["spec"]["containers"][0]["ports"][0].update(containerPort="8080"),
            "is not of type 'integer'",
        ),
        (lambda doc: doc["metadata"].pop("name"), "'name' is a required property"),
    ],
)
def test_validation_catches_mistakes(mutate: Any, expected: str) -> None:
    doc = documents(RUNTIME)[0]
    mutate(doc)
    assert any(expected in error for error in schema_errors(doc))


def test_kubernetes_validate_catches_mistakes_in_builtin_kinds() -> None:
    hpa = documents(DEPLOY / "kserve" / "examples" / "hpa-streams-ratio.yaml")[0]
    hpa["spec"]["maxReplicas"] = "eight"
    assert schema_errors(hpa) != []


def test_runtime_is_a_drop_in_for_kserve_openvino() -> None:
    ours = documents(RUNTIME)[0]
    upstream = documents(SCHEMAS / "upstream-kserve-openvino.yaml")[0]
    mine, theirs = ours["spec"], upstream["spec"]
    assert ours["kind"] == upstream["kind"] == "ClusterServingRuntime"
    assert ours["metadata"]["name"] == "kserve-ovserve"
    assert ours["metadata"]["annotations"]["serving.kserve.io/server-type"] == "ovms"
    assert mine["protocolVersions"] == theirs["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    assert mine["annotations"] == theirs["annotations"]
    formats = {f["name"]: f for f in mine["supportedModelFormats"]}
    assert set(formats) == {"openvino", "onnx"}
    for upstream_format in theirs["supportedModelFormats"]:
        if upstream_format["name"] in formats:
            assert formats[upstream_format["name"]] == upstream_format
    container, upstream_container = mine["containers"][0], theirs["containers"][0]
    assert container["name"] == upstream_container["name"] == "kserve-container"
    assert container["args"][: len(upstream_container["args"])] == upstream_container["args"]
    assert container["securityContext"] == upstream_container["securityContext"]
    assert container["resources"] == upstream_container["resources"]


def test_runtime_declares_the_port_and_probes_upstream_lacks() -> None:
    container = documents(RUNTIME)[0]["spec"]["containers"][0]
    port = int(documents(RUNTIME)[0]["spec"]["annotations"]["prometheus.kserve.io/port"])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/v2/health/ready", "port": port}
    assert "--rest_port=8080" in container["args"]
