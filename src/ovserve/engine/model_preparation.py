"""Preparing an ``ov.Model`` for compilation: datatypes, partial shapes, layout and reshape.

Everything here runs once per load; nothing here is on the request path.
"""

from __future__ import annotations

import re
from typing import Any

import openvino as ov

from ovserve.config.layout import Layout
from ovserve.config.model_config import ModelConfig
from ovserve.config.shape import ANONYMOUS_INPUT, AUTO, Dimension, Shape
from ovserve.errors import ConfigError
from ovserve.tensors import DataType

_OV_TO_DATATYPE: dict[str, DataType] = {
    "boolean": DataType.BOOL,
    "u8": DataType.UINT8,
    "u16": DataType.UINT16,
    "u32": DataType.UINT32,
    "u64": DataType.UINT64,
    "i8": DataType.INT8,
    "i16": DataType.INT16,
    "i32": DataType.INT32,
    "i64": DataType.INT64,
    "f16": DataType.FP16,
    "f32": DataType.FP32,
    "f64": DataType.FP64,
    "string": DataType.BYTES,
}


def datatype_of(element_type: ov.Type) -> DataType:
    """The DataType for an OpenVINO element type; ConfigError for ones the server cannot serve."""
    name = element_type.get_type_name()
    try:
        return _OV_TO_DATATYPE[name]
    except KeyError:
        raise ConfigError(f"Unsupported tensor precision {name}") from None


def to_partial_shape(shape: Shape) -> ov.PartialShape:
    """Our Shape as an OpenVINO PartialShape (ranges become dimension bounds)."""
    return ov.PartialShape([_to_ov_dimension(dim) for dim in shape.dims])


def _to_ov_dimension(dim: Dimension) -> ov.Dimension:
    if dim.is_static:
        return ov.Dimension(dim.lower)
    if dim.is_any:
        return ov.Dimension(-1)
    return ov.Dimension(dim.lower, -1 if dim.upper is None else dim.upper)


def from_partial_shape(partial: ov.PartialShape) -> Shape:
    """An OpenVINO PartialShape as our Shape."""
    dims = []
    for dim in partial:
        if dim.is_static:
            dims.append(Dimension.static(dim.get_length()))
        else:
            upper = dim.get_max_length()
            dims.append(Dimension(dim.get_min_length(), None if upper < 0 else upper))
    return Shape(tuple(dims))


def first_error_line(error: BaseException) -> str:
    """The informative last non-empty line of an OpenVINO error (its text nests locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _tensor_names(port: ov.Output) -> set[str]:
    return set(port.get_names())


def _port_for(model: ov.Model, key: str, what: str) -> ov.Output:
    """The model input a configured key refers to (the only one for the anonymous key)."""
    inputs = model.inputs
    if key == ANONYMOUS_INPUT:
        if len(inputs) != 1:
            raise ConfigError(f"Anonymous fixed {what} is invalid for models with multiple inputs")
        return inputs[0]
    for port in inputs:
        if key in _tensor_names(port):
            return port
    raise ConfigError(f"Config {what} - {key} not found in model")


def apply_preprocessing(model: ov.Model, config: ModelConfig) -> ov.Model:
    """Layouts and OVMS's preprocessing options, in one PrePostProcessor, as OVMS builds it.

    Per input, the client's layout (``tgt`` of ``tgt:src``) and the model's; then, on the only
    input: the client's colour format converted, its element type converted, mean subtracted,
    scale divided. OpenVINO appends the conversion to the model's type and layout after these,
    so mean and scale work per channel in the client's layout.
    """
    if not config.layout and not config.preprocessing:
        return model
    ppp = ov.preprocess.PrePostProcessor(model)
    for key, layout in config.layout.items():
        port = _port_for(model, key, "layout")
        _check_layout_rank(port, layout, config.name)
        step = ppp.input(port.get_any_name())
        if layout.source is None:
            step.model().set_layout(ov.Layout(layout.target))
        else:
            step.tensor().set_layout(ov.Layout(layout.target))
            step.model().set_layout(ov.Layout(layout.source))
    if config.preprocessing:
        _add_input_conversions(ppp, model, config)
    try:
        built = ppp.build()
    except RuntimeError as error:
        what = "layout or preprocessing" if config.preprocessing else "layout"
        raise ConfigError(
            f"Model {config.name}: cannot apply {what}: {first_error_line(error)}"
        ) from None
    for port in built.inputs:
        # Every input needs a tensor name for clients. Planar colour formats get theirs from
        # _PLANES; should a PrePostProcessor step add an unnamed one, use its node's name.
        if not port.get_names():
            port.get_tensor().set_names({port.get_node().get_friendly_name()})
    return built


_COLOR_FORMATS: dict[str, ov.preprocess.ColorFormat] = {
    "RGB": ov.preprocess.ColorFormat.RGB,
    "BGR": ov.preprocess.ColorFormat.BGR,
    "GRAY": ov.preprocess.ColorFormat.GRAY,
    "NV12": ov.preprocess.ColorFormat.NV12_SINGLE_PLANE,
    "NV12_2": ov.preprocess.ColorFormat.NV12_TWO_PLANES,
    "I420": ov.preprocess.ColorFormat.I420_SINGLE_PLANE,
    "I420_3": ov.preprocess.ColorFormat.I420_THREE_PLANES,
}

_PLANES: dict[str, list[str]] = {"NV12_2": ["y", "uv"], "I420_3": ["y", "u", "v"]}
"""Planar formats split the input into one parameter per plane, named ``<input>/<plane>``."""

_ELEMENT_TYPES: dict[str, ov.Type] = {
    "BF16": ov.Type.bf16,
    "FP64": ov.Type.f64,
    "FP32": ov.Type.f32,
    "FP16": ov.Type.f16,
    "INT64": ov.Type.i64,
    "INT32": ov.Type.i32,
    "INT16": ov.Type.i16,
    "INT8": ov.Type.i8,
    "INT4": ov.Type.i4,
    "UINT64": ov.Type.u64,
    "UINT32": ov.Type.u32,
    "UINT16": ov.Type.u16,
    "UINT8": ov.Type.u8,
    "UINT4": ov.Type.u4,
    "UINT1": ov.Type.u1,
}


def _add_input_conversions(
    ppp: ov.preprocess.PrePostProcessor, model: ov.Model, config: ModelConfig
) -> None:
    """OVMS's steps on the unnamed input, in its order (``applyPreprocessingConfiguration``)."""
    if len(model.inputs) != 1:
        raise ConfigError(
            f"Model {config.name}: mean, scale, color_format and precision apply to a model's "
            f"only input, and this model has {len(model.inputs)} inputs"
        )
    options = config.preprocessing
    step = ppp.input()
    try:
        if options.color_format is not None:
            client = options.color_format.client
            step.tensor().set_color_format(_COLOR_FORMATS[client], _PLANES.get(client, []))
            step.preprocess().convert_color(_COLOR_FORMATS[options.color_format.converted])
        if options.precision is not None:
            step.tensor().set_element_type(_ELEMENT_TYPES[options.precision.client])
            step.preprocess().convert_element_type(_ELEMENT_TYPES[options.precision.converted])
        if options.mean is not None:
            step.preprocess().mean(_as_ov_values(options.mean))
        if options.scale is not None:
            step.preprocess().scale(_as_ov_values(options.scale))
    except RuntimeError as error:
        raise ConfigError(
            f"Model {config.name}: cannot configure input preprocessing: {first_error_line(error)}"
        ) from None


def _as_ov_values(value: float | tuple[float, ...]) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


def _check_layout_rank(port: ov.Output, layout: Layout, model_name: str) -> None:
    rank = port.get_partial_shape().rank
    axes = layout.source or layout.target
    if "..." not in axes and rank.is_static and rank.get_length() != len(axes):
        raise ConfigError(
            f"Model {model_name}: layout {layout} does not fit input "
            f"{port.get_any_name()} of rank {rank.get_length()}"
        )


def apply_shape(model: ov.Model, config: ModelConfig) -> None:
    """Reshape to the configured shapes, or set the batch dimension from ``batch_size``."""
    new_shapes: dict[str, ov.PartialShape] = {}
    for key, value in config.shape.items():
        port = _port_for(model, key, "shape")
        if value != AUTO:
            assert isinstance(value, Shape)
            new_shapes[port.get_any_name()] = to_partial_shape(value)
    if not config.shape and isinstance(config.batch_size, Dimension):
        for port in model.inputs:
            partial = port.get_partial_shape()
            if partial.rank.is_static and partial.rank.get_length() > 0:
                dims = list(from_partial_shape(partial).dims)
                dims[_batch_index(port)] = config.batch_size
                new_shapes[port.get_any_name()] = to_partial_shape(Shape(tuple(dims)))
    if not new_shapes:
        return
    try:
        model.reshape(new_shapes)
    except RuntimeError as error:
        detail = _rank_mismatch(model, new_shapes) or f"({first_error_line(error)})"
        raise ConfigError(
            f"OV does not support reshaping model: {config.name} with provided shape {detail}"
        ) from None


def _rank_mismatch(model: ov.Model, new_shapes: dict[str, ov.PartialShape]) -> str | None:
    """A plain account of a shape whose rank differs from its input's, if there is one."""
    for port in model.inputs:
        given = new_shapes.get(port.get_any_name())
        rank = port.get_partial_shape().rank
        if given is None or not rank.is_static or given.rank.get_length() == rank.get_length():
            continue
        return (
            f"{from_partial_shape(given)}: input {port.get_any_name()} has "
            f"{rank.get_length()} dimensions {from_partial_shape(port.get_partial_shape())}, "
            f"the shape given has {given.rank.get_length()}"
        )
    return None


def _batch_index(port: ov.Output) -> int:
    """Index of the N axis in the input's layout (0 when there is no layout)."""
    layout = ov.layout_helpers.get_layout(port)
    if not layout.empty and ov.layout_helpers.has_batch(layout):
        rank = int(port.get_partial_shape().rank.get_length())
        return int(ov.layout_helpers.batch_idx(layout)) % rank
    return 0


VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
"""OpenVINO's devices that choose among or combine the real ones (``MULTI:CPU,GPU``)."""


def unknown_device(available: list[str], device: str) -> str | None:
    """Why ``device`` names no device of this machine, listing those there are (None: fine).

    ``available`` is ``Core().available_devices`` (``CPU``, ``GPU.0``...); a bare ``GPU``
    matches ``GPU.0``.
    """
    listing = (
        f"available devices: {', '.join(available) or 'none'} "
        "(AUTO, MULTI:<devices> and HETERO:<devices> combine them)"
    )
    if not device.strip():
        return f"target_device is empty; {listing}"
    names = [name for name in re.split(r"[:,()]", device) if name.strip()]
    for name in names:
        base = name.strip().upper()
        if base in VIRTUAL_DEVICES or base.isdigit():
            continue
        if not any(found == base or found.startswith(f"{base}.") for found in available):
            return f"target device {name} is not available; {listing}"
    return None


def compile_properties(config: ModelConfig) -> dict[str, Any]:
    """plugin_config plus OVMS's default THROUGHPUT hint and the model cache folder."""
    properties: dict[str, Any] = dict(config.plugin_config)
    if "PERFORMANCE_HINT" not in properties and "NUM_STREAMS" not in properties:
        properties["PERFORMANCE_HINT"] = "THROUGHPUT"
    if config.cache_dir is not None:
        properties["CACHE_DIR"] = str(config.cache_dir)
    return properties


def layout_name(port: ov.Output) -> str | None:
    """The port's layout as letters (``NHWC``), or None when it has none."""
    layout = ov.layout_helpers.get_layout(port)
    return None if layout.empty else layout.to_string().strip("[]").replace(",", "")
