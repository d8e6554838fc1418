"""KServe v2 REST against the Open Inference Protocol spec, fuzzed by schemathesis.

Every generated request (valid and invalid) must get a documented, well-formed answer: no 5xx,
responses matching the spec's schemas and content types, invalid data refused. Two checks are
left out on purpose: ``positive_data_acceptance`` (the spec's generic tensor schema is not this
model's inputs, so "valid" generated tensors are rightly refused) and ``unsupported_method``
(OVMS answers an undeclared method with 406 ``Unsupported method``; the check wants 405).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from _models import add_onnx, save_onnx
from _server import ServerPool
from _skips import OFFLINE, unavailable

SPEC = Path(__file__).parent / "specs" / "open_inference_rest.yaml"
EXAMPLES = 120
"""About 290 generated cases in 20 s: the default run."""
LONG_EXAMPLES = 1000
LONG_MIN_CASES = 1000
"""The long variant (``-m slow``): at least 1,000 cases (about two minutes here)."""


def _schemathesis() -> list[str]:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        unavailable(OFFLINE, "schemathesis is not installed (pip install -e '.[dev]')")
    return [found]


def test_v2_rest_conforms_to_the_open_inference_spec(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    _conformance(server_factory, tmp_path, EXAMPLES, min_cases=200)


@pytest.mark.slow
def test_v2_rest_conforms_to_the_open_inference_spec_long(
    server_factory: ServerPool, tmp_path: Path
) -> None:
    _conformance(server_factory, tmp_path, LONG_EXAMPLES, min_cases=LONG_MIN_CASES)


def _conformance(server_factory: ServerPool, tmp_path: Path, examples: int, min_cases: int) -> None:
    save_onnx(add_onnx(), tmp_path / "add")
    server = server_factory.start(
        ["--model_name", "add", "--model_path", str(tmp_path / "add")], grpc=False, rest=True
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text('[parameters]\n"path.MODEL_NAME" = "add"\n"path.MODEL_VERSION" = "1"\n')
    command = [
        *_schemathesis(),
        "--config-file",
        str(config),
        "run",
        str(SPEC),
        "--url",
        server.rest_url,
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance,unsupported_method",
        "--max-examples",
        str(examples),
        "--seed",
        "1",
        "--continue-on-failure",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=600, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 6" in result.stdout, result.stdout[-3000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases is not None, result.stdout[-3000:]
    assert int(cases[1]) >= min_cases, cases[0]
    assert int(cases[2]) == int(cases[1]), cases[0]
    assert "Traceback" not in server.log_text()
