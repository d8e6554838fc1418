"""Face detection client for OpenVINO Model Server and ovserve (the dynamic-shape demo).

Reads every image in ``--input_images_dir``, resizes it to ``--width`` x ``--height``, sends
it as NCHW BGR float32 input ``data`` to the model ``--model_name`` over gRPC (TF Serving API
with ovmsclient, or KServe v2 with tritonclient), draws a box around each detection of
``detection_out`` with confidence > 0.5 and writes ``<output_dir>/<iteration>_<image>.jpg``.

A user-side script: it needs only numpy, opencv and the chosen client library
(see requirements.txt), not ovserve.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

INPUT_NAME = "data"
OUTPUT_NAME = "detection_out"
CONF_THRESHOLD = 0.5
REQUEST_TIMEOUT_S = 10.0
#: Files with these suffixes are images; anything else in the folder (a README, a licence
#: note) is ignored, while an image that cannot be decoded is reported and skipped.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
BOX_COLOR_BGR = (0, 0, 255)
DEFAULT_IMAGES_DIR = Path(__file__).resolve().parent / "images"


class ClientError(Exception):
    """A failure shown to the user as one line, with a non-zero exit status."""


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS channel."""

    server_cert: str
    client_cert: str | None
    client_key: str | None


class Backend(Protocol):
    """One gRPC API: sends a batch, returns ``detection_out``."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Send ``batch`` (N,3,H,W f32) as ``data``; return ``detection_out``."""


class TfsBackend:
    """TensorFlow Serving gRPC API (PredictionService.Predict) through ovmsclient."""

    def __init__(self, address: str, model_name: str, tls: TlsFiles | None) -> None:
        from ovmsclient import make_grpc_client

        tls_config: dict[str, str] | None = None
        if tls is not None:
            tls_config = {"server_cert_path": tls.server_cert}
            if tls.client_cert:
                tls_config["client_cert_path"] = tls.client_cert
            if tls.client_key:
                tls_config["client_key_path"] = tls.client_key
        try:
            self._client = make_grpc_client(address, tls_config=tls_config)
        except (TypeError, ValueError, OSError) as exc:
            raise ClientError(f"cannot set up the TFS gRPC client: {exc}") from exc
        self._address = address
        self._model_name = model_name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        from ovmsclient.tfs_compat.base.errors import ModelServerError

        try:
            result: Any = self._client.predict(
                inputs={INPUT_NAME: batch}, model_name=self._model_name, timeout=REQUEST_TIMEOUT_S
            )
        except ConnectionError as exc:
            raise ClientError(f"server at {self._address} unavailable: {_details(exc)}") from exc
        except TimeoutError as exc:
            raise ClientError(
                f"no answer from {self._address} within {REQUEST_TIMEOUT_S:g} s"
            ) from exc
        except ModelServerError as exc:
            raise ClientError(f"the server refused the request: {_details(exc)}") from exc
        if isinstance(result, dict):
            if OUTPUT_NAME not in result:
                raise ClientError(f"the server's answer has no output {OUTPUT_NAME!r}")
            result = result[OUTPUT_NAME]
        return np.asarray(result)


class KServeBackend:
    """KServe v2 gRPC API (GRPCInferenceService.ModelInfer) through tritonclient."""

    def __init__(self, address: str, model_name: str, tls: TlsFiles | None) -> None:
        import tritonclient.grpc as grpcclient

        self._grpcclient = grpcclient
        try:
            if tls is None:
                self._client = grpcclient.InferenceServerClient(address)
            else:
                self._client = grpcclient.InferenceServerClient(
                    address,
                    ssl=True,
                    root_certificates=tls.server_cert,
                    private_key=tls.client_key,
                    certificate_chain=tls.client_cert,
                )
        except OSError as exc:
            raise ClientError(f"cannot set up the KServe gRPC client: {exc}") from exc
        self._address = address
        self._model_name = model_name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        grpcclient = self._grpcclient
        data = grpcclient.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        data.set_data_from_numpy(batch)
        try:
            result = self._client.infer(
                self._model_name,
                [data],
                outputs=[grpcclient.InferRequestedOutput(OUTPUT_NAME)],
                client_timeout=REQUEST_TIMEOUT_S,
            )
        except InferenceServerException as exc:
            status = exc.status() or ""
            message = exc.message() or str(exc)
            if "UNAVAILABLE" in status:
                raise ClientError(f"server at {self._address} unavailable: {message}") from exc
            if "DEADLINE_EXCEEDED" in status:
                raise ClientError(
                    f"no answer from {self._address} within {REQUEST_TIMEOUT_S:g} s"
                ) from exc
            raise ClientError(f"the server refused the request: {message}") from exc
        output = result.as_numpy(OUTPUT_NAME)
        if output is None:
            raise ClientError(f"the server's answer has no output {OUTPUT_NAME!r}")
        return np.asarray(output)


def _details(exc: Exception) -> str:
    """The server's message without ovmsclient's generic prefix."""
    text = str(exc)
    prefix = "Error occurred during handling the request: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def make_backend(api: str, address: str, model_name: str, tls: TlsFiles | None) -> Backend:
    """The client for ``api`` ("tfs" or "kserve")."""
    if api == "kserve":
        return KServeBackend(address, model_name, tls)
    return TfsBackend(address, model_name, tls)


@dataclass(frozen=True)
class Picture:
    """One input image, resized to the request size."""

    name: str
    bgr: np.ndarray  # H x W x 3 uint8


def load_pictures(folder: Path, width: int, height: int) -> list[Picture]:
    """Read the folder's images (sorted by name) and resize them; report unreadable ones."""
    if not folder.is_dir():
        raise ClientError(f"--input_images_dir {folder} is not a folder")
    pictures: list[Picture] = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"warning: cannot read {path} as an image; skipped", file=sys.stderr)
            continue
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        pictures.append(Picture(path.name, resized))
    return pictures


def to_batch(pictures: Sequence[Picture]) -> np.ndarray:
    """Stack HWC BGR uint8 images into an NCHW float32 batch."""
    return np.stack([p.bgr.transpose(2, 0, 1) for p in pictures]).astype(np.float32)


def faces_of(detections: np.ndarray, index: int) -> np.ndarray:
    """Rows [image_id, label, conf, x1, y1, x2, y2] of image ``index`` with conf > 0.5."""
    rows = detections.reshape(-1, 7)
    keep = (rows[:, 0] == index) & (rows[:, 2] > CONF_THRESHOLD)
    faces: np.ndarray = rows[keep]
    return faces


def draw_faces(bgr: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """A copy of ``bgr`` with a red box around each face (normalised coordinates)."""
    out = bgr.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(width, height) / 250))
    for _, _, _, x1, y1, x2, y2 in faces:
        top_left = (round(x1 * width), round(y1 * height))
        bottom_right = (round(x2 * width), round(y2 * height))
        cv2.rectangle(out, top_left, bottom_right, BOX_COLOR_BGR, thickness)
    return out


def output_name(iteration: int, picture: Picture, used: set[str]) -> str:
    """``<iteration>_<image stem>.jpg``, made unique if two images share a stem."""
    name = f"{iteration}_{Path(picture.name).stem}.jpg"
    if name in used:
        name = f"{iteration}_{picture.name}.jpg"
    used.add(name)
    return name


def print_summary(latencies_s: Sequence[float], images: int) -> None:
    """Latency statistics over all requests and the sequential throughput."""
    ms = np.array(latencies_s) * 1000.0
    total = float(np.sum(latencies_s))
    print(
        f"Summary: {len(ms)} requests, {images} images; latency ms: "
        f"mean {statistics.fmean(ms):.1f}, median {float(np.median(ms)):.1f}, "
        f"p90 {float(np.percentile(ms, 90)):.1f}, min {float(ms.min()):.1f}, "
        f"max {float(ms.max()):.1f}; throughput {images / total:.1f} images/s"
    )


def tls_files(args: argparse.Namespace) -> TlsFiles:
    """The --tls files, checked to exist (the client libraries fail obscurely otherwise)."""
    if not args.server_cert:
        raise ClientError("--tls needs --server_cert (and --client_cert with --client_key)")
    if bool(args.client_cert) != bool(args.client_key):
        raise ClientError("--client_cert and --client_key go together")
    for flag in ("server_cert", "client_cert", "client_key"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            raise ClientError(f"--{flag} {path}: no such file")
    return TlsFiles(args.server_cert, args.client_cert, args.client_key)


def run(args: argparse.Namespace) -> int:
    """Detect faces in every full batch of images; return the exit status."""
    tls = tls_files(args) if args.tls else None
    pictures = load_pictures(args.input_images_dir, args.width, args.height)
    batch_size: int = args.batch_size
    iterations = len(pictures) // batch_size
    if iterations == 0:
        raise ClientError(
            f"{len(pictures)} readable image(s) in {args.input_images_dir}, "
            f"fewer than --batch_size {batch_size}"
        )
    leftover = len(pictures) - iterations * batch_size
    if leftover:
        dropped = ", ".join(p.name for p in pictures[-leftover:])
        print(
            f"note: {len(pictures)} images do not fill whole batches of {batch_size}; "
            f"the last {leftover} ({dropped}) are not sent, as in OVMS's demo"
        )
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClientError(f"cannot create --output_dir {args.output_dir}: {exc}") from exc

    address = f"{args.grpc_address}:{args.grpc_port}"
    backend = make_backend(args.api, address, args.model_name, tls)
    api = "KServe" if args.api == "kserve" else "TFS"
    print(
        f"{len(pictures)} images at {args.width}x{args.height}, batch {batch_size}, "
        f"model {args.model_name!r} at {address} ({api} gRPC)"
    )

    latencies: list[float] = []
    used: set[str] = set()
    for iteration in range(1, iterations + 1):
        chunk = pictures[(iteration - 1) * batch_size : iteration * batch_size]
        start = time.perf_counter()
        try:
            detections = backend.infer(to_batch(chunk))
        except ClientError as exc:
            if batch_size > 1 and "batch size" in str(exc).lower():
                raise ClientError(
                    f"{exc} (--batch_size {batch_size} needs a server started with "
                    f'--shape "(-1,3,-1,-1)" or "({batch_size},3,-1,-1)")'
                ) from exc
            raise
        latency = time.perf_counter() - start
        latencies.append(latency)
        if detections.shape[-1:] != (7,):
            raise ClientError(f"unexpected {OUTPUT_NAME} shape {detections.shape}")
        found = []
        for index, picture in enumerate(chunk):
            faces = faces_of(detections, index)
            target = args.output_dir / output_name(iteration, picture, used)
            if not cv2.imwrite(str(target), draw_faces(picture.bgr, faces)):
                raise ClientError(f"cannot write {target}")
            found.append(f"{picture.name}: {len(faces)} face{'' if len(faces) == 1 else 's'}")
        print(
            f"Iteration {iteration}: {latency * 1000:.1f} ms, "
            f"{batch_size / latency:.1f} fps; {', '.join(found)}"
        )
    print_summary(latencies, iterations * batch_size)
    print(f"Pictures with boxes written to {args.output_dir}/")
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The original demo's flags plus --api."""
    parser = argparse.ArgumentParser(
        description="Detect faces with a face-detection model served by OVMS or ovserve."
    )
    parser.add_argument(
        "--input_images_dir",
        type=Path,
        default=DEFAULT_IMAGES_DIR,
        help="folder of images (default: the demo's images/)",
    )
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=Path("results"),
        help="where the pictures with boxes go; created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--batch_size",
        type=positive_int,
        default=1,
        help="images per request; leftover images are not sent (default: %(default)s)",
    )
    parser.add_argument("--width", type=positive_int, default=1200, help="default: %(default)s")
    parser.add_argument("--height", type=positive_int, default=800, help="default: %(default)s")
    parser.add_argument("--grpc_address", default="localhost", help="default: %(default)s")
    parser.add_argument("--grpc_port", type=positive_int, default=9000, help="default: %(default)s")
    parser.add_argument("--model_name", default="face-detection", help="default: %(default)s")
    parser.add_argument(
        "--api",
        choices=["tfs", "kserve"],
        default="tfs",
        help="gRPC API: TF Serving (ovmsclient) or KServe v2 (tritonclient); default: tfs",
    )
    parser.add_argument("--tls", action="store_true", help="use a TLS channel")
    parser.add_argument("--server_cert", help="CA/server certificate (PEM) for --tls")
    parser.add_argument("--client_cert", help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--client_key", help="client private key (PEM) for mutual TLS")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the client; errors become one ``error: ...`` line on stderr and exit status 1."""
    args = parse_args(argv)
    try:
        return run(args)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
