"""``./demo``, the main job, run end to end: exit status, its steps, and the pictures it draws.

The demo prepares the face model (reusing ``models/`` and the wheel cache in ``.cache/`` when
present), starts two servers, runs the client at 500x500 and 600x400 and shows the range server
refusing 600x400. Bounded by ``TIMEOUT_S`` (about 1.5 minutes here from a fresh checkout, less
when the model is already prepared). Its pictures must show a red box on the hand-labelled face
of the astronaut and of Grace Hopper.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from _server import free_port

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "demos" / "face_detection" / "images"
TIMEOUT_S = 900
#: Faces labelled by hand on the original 512x512 photos (x1, y1, x2, y2).
FACES = {"astronaut.png": (178, 62, 268, 178), "grace_hopper.jpg": (172, 118, 352, 332)}
PICTURES = ["1_astronaut.jpg", "2_city.jpg", "3_grace_hopper.jpg"]
REFUSAL = (
    "Invalid input shape - Expected: (1,3,[200~500],[200~500]); "
    "Actual: (1,3,400,600); input name: data"
)


def iou(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    left, top = np.maximum(a[:2], b[:2])
    right, bottom = np.minimum(a[2:], b[2:])
    inter = max(0.0, right - left) * max(0.0, bottom - top)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return float(inter / (area - inter))


def drawn_box(picture: Path, original: Path) -> npt.NDArray[np.float64]:
    """The extent of the pure-red pixels that are not in the (resized) original."""
    written = np.asarray(Image.open(picture).convert("RGB")).astype(int)
    height, width = written.shape[:2]
    plain = np.asarray(
        Image.open(original).convert("RGB").resize((width, height), Image.Resampling.BOX)
    ).astype(int)
    red = (written[:, :, 0] > 200) & (written[:, :, 1] < 80) & (written[:, :, 2] < 80)
    red &= np.abs(written - plain).sum(axis=2) > 100
    ys, xs = np.nonzero(red)
    assert len(xs) > 100, f"no box drawn in {picture.name}"
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


def run_demo() -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEMO_PORT": str(free_port())}
    return subprocess.run(
        [str(ROOT / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_demo_end_to_end() -> None:
    results = {(500, 500): ROOT / "results_500x500", (600, 400): ROOT / "results_600x400"}
    for folder in results.values():
        shutil.rmtree(folder, ignore_errors=True)  # the demo's own output: no stale pictures
    proc = run_demo()
    if proc.returncode != 0 and "is in use" in proc.stderr:
        proc = run_demo()  # the picked port was taken meanwhile (tests run in parallel here)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    for step in range(1, 7):
        assert f"==> {step}/6 " in proc.stdout
    assert REFUSAL in proc.stdout
    assert "Traceback" not in output
    for (width, height), folder in results.items():
        assert sorted(path.name for path in folder.iterdir()) == PICTURES
        for name in PICTURES:
            with Image.open(folder / name) as image:
                assert image.size == (width, height)
        for original, face in FACES.items():
            stem = Path(original).stem
            (picture,) = folder.glob(f"*_{stem}.jpg")
            scale = np.array([width, height, width, height], dtype=np.float64) / 512
            box = drawn_box(picture, IMAGES / original)
            assert iou(box, np.array(face, np.float64) * scale) >= 0.6, (picture, box)
