"""The shape grammar: dimensions, shapes, ``--shape`` and ``--batch_size`` values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovserve.config.shape import (
    ANONYMOUS_INPUT,
    AUTO,
    Dimension,
    Shape,
    format_sizes,
    parse_batch_size,
    parse_dimension,
    parse_shape,
    parse_shape_object,
    parse_shape_param,
)
from ovserve.errors import ConfigError, ErrorCode

SIZES = st.integers(min_value=0, max_value=10**6)


@st.composite
def ranges(draw: st.DrawFn) -> Dimension:
    """A range dimension ``lower:upper`` with lower < upper."""
    lower = draw(st.integers(min_value=0, max_value=10**6 - 1))
    upper = draw(st.integers(min_value=lower + 1, max_value=10**6))
    return Dimension.range(lower, upper)


DIMENSIONS = st.one_of(SIZES.map(Dimension.static), st.just(Dimension.any()), ranges())
SHAPES = st.lists(DIMENSIONS, max_size=8).map(lambda dims: Shape(tuple(dims)))
SPACE = st.sampled_from(["", " ", "  ", "\t"])


def grammar(dim: Dimension) -> str:
    """How a user writes a dimension on the command line."""
    if dim.is_static:
        return str(dim.lower)
    if dim.is_any:
        return "-1"
    return f"{dim.lower}:{dim.upper}"


def ovms_text(dim: Dimension) -> str:
    """How OVMS prints a dimension in error messages."""
    if dim.is_static:
        return str(dim.lower)
    if dim.is_any:
        return "-1"
    return f"[{dim.lower}~{dim.upper}]"


# --- Dimension ---------------------------------------------------------------------------------


@given(SIZES)
def test_static_dimension_matches_only_its_size(size: int) -> None:
    dim = Dimension.static(size)
    assert dim.is_static
    assert not dim.is_any
    assert dim.match(size)
    assert not dim.match(size + 1)
    assert not dim.match(size - 1)
    assert dim.metadata_size() == size
    assert str(dim) == str(size)


@given(st.integers(min_value=0, max_value=2**63))
def test_any_dimension_matches_every_non_negative_size(size: int) -> None:
    dim = Dimension.any()
    assert dim.is_any
    assert not dim.is_static
    assert dim.match(size)
    assert dim.metadata_size() == -1
    assert str(dim) == "-1"


def test_any_dimension_rejects_negative_sizes() -> None:
    assert not Dimension.any().match(-1)


@given(ranges(), st.integers(min_value=-10, max_value=10**6 + 10))
def test_range_matches_inclusively(dim: Dimension, size: int) -> None:
    assert dim.upper is not None
    assert dim.match(size) == (dim.lower <= size <= dim.upper)
    assert dim.metadata_size() == -1
    assert str(dim) == f"[{dim.lower}~{dim.upper}]"


def test_range_bounds_are_inclusive() -> None:
    dim = Dimension.range(200, 500)
    assert [dim.match(size) for size in (199, 200, 350, 500, 501)] == [
        False,
        True,
        True,
        True,
        False,
    ]


def test_lower_bounded_dimension_prints_open_upper_bound() -> None:
    # OpenVINO can report a dimension with only a lower bound; OVMS prints it as [N~-1].
    dim = Dimension(5, None)
    assert str(dim) == "[5~-1]"
    assert dim.match(10**9)
    assert not dim.match(4)


# --- Shape -------------------------------------------------------------------------------------


def test_shape_prints_as_ovms() -> None:
    shape = Shape.of(1, 3, Dimension.range(200, 500), Dimension.range(200, 500))
    assert str(shape) == "(1,3,[200~500],[200~500])"
    assert str(Shape.of(1, 3, -1, -1)) == "(1,3,-1,-1)"
    assert str(Shape(())) == "()"


def test_shape_of_maps_minus_one_to_any() -> None:
    assert Shape.of(1, -1).dims == (Dimension.static(1), Dimension.any())


def test_shape_match() -> None:
    shape = Shape.of(1, 3, Dimension.range(200, 500), -1)
    assert shape.match((1, 3, 300, 7))
    assert shape.match(iter([1, 3, 200, 1]))
    assert not shape.match((1, 3, 600, 400))
    assert not shape.match((2, 3, 300, 400))
    assert not shape.match((1, 3, 300))
    assert not shape.match((1, 3, 300, 400, 1))


def test_shape_properties() -> None:
    assert Shape.of(1, 3).is_static
    assert not Shape.of(1, -1).is_static
    assert Shape.of(1, -1, 4).rank == 3
    assert Shape.of(1, Dimension.range(2, 9), -1).metadata_sizes() == [1, -1, -1]


def test_format_sizes() -> None:
    assert format_sizes((1, 3, 600, 400)) == "(1,3,600,400)"
    assert format_sizes(()) == "()"


def inside(dim: Dimension) -> st.SearchStrategy[int]:
    """Sizes the dimension accepts, from its definition (not from ``match``)."""
    if dim.is_any:
        return SIZES
    upper = dim.lower if dim.upper is None else dim.upper
    return st.integers(min_value=dim.lower, max_value=upper)


@given(SHAPES, st.data())
def test_shape_matches_sizes_built_inside_every_dimension(
    shape: Shape, data: st.DataObject
) -> None:
    assert shape.match([data.draw(inside(dim)) for dim in shape.dims])


@given(SHAPES, st.data())
def test_shape_refuses_another_rank_or_one_size_outside(shape: Shape, data: st.DataObject) -> None:
    sizes = [data.draw(inside(dim)) for dim in shape.dims]
    assert not shape.match([*sizes, 1])
    if sizes:
        assert not shape.match(sizes[:-1])
    bounded = [i for i, dim in enumerate(shape.dims) if not dim.is_any]
    if bounded:
        index = data.draw(st.sampled_from(bounded))
        dim = shape.dims[index]
        upper = dim.lower if dim.upper is None else dim.upper
        outside = [upper + 1] + ([dim.lower - 1] if dim.lower > 0 else [])
        sizes[index] = data.draw(st.sampled_from(outside))
        assert not shape.match(sizes)


# --- parse_shape / parse_dimension: round trips -----------------------------------------------


@given(SHAPES, SPACE, SPACE)
def test_parse_round_trips_the_grammar(shape: Shape, pad: str, gap: str) -> None:
    text = f"{pad}({gap}" + f"{gap},{gap}".join(grammar(dim) for dim in shape.dims) + f"{gap}){pad}"
    parsed = parse_shape(text)
    assert parsed == shape
    assert str(parsed) == "(" + ",".join(ovms_text(dim) for dim in shape.dims) + ")"


@given(SHAPES)
def test_parse_accepts_square_brackets(shape: Shape) -> None:
    assert parse_shape("[" + ",".join(grammar(dim) for dim in shape.dims) + "]") == shape


@given(DIMENSIONS)
def test_parse_dimension_round_trips(dim: Dimension) -> None:
    assert parse_dimension(grammar(dim)) == dim


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(1,3,-1,-1)", Shape.of(1, 3, -1, -1)),
        ("(1,3,200:500,200:500)", Shape.of(1, 3, Dimension(200, 500), Dimension(200, 500))),
        ("(1, 3, 224, 224)", Shape.of(1, 3, 224, 224)),
        ("(0:1)", Shape.of(Dimension(0, 1))),
        ("(0)", Shape.of(0)),
        ("()", Shape(())),
    ],
)
def test_parse_shape_examples(text: str, expected: Shape) -> None:
    assert parse_shape(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "(",
        ")",
        "1,3",
        "(1,3",
        "1,3)",
        "(1,,3)",
        "(1,3,)",
        "(,)",
        "(1,a)",
        "(1.5)",
        "(-2)",
        "(-0:5)",
        "(5:5)",
        "(6:5)",
        "(1:-1)",
        "(-1:5)",
        "(1:2:3)",
        "((1))",
        "(1)(2)",
        "[1,2)",
        "(1,[2],3)",
        "{1,2}",
        "(1;2)",
        "(\uff11)",  # a full-width digit must not pass as a number
        "(\u0663)",  # an Arabic-Indic digit must not pass as a number
    ],
)
def test_parse_shape_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        parse_shape(text)


@given(st.text(alphabet="0123456789(),-:[] ", max_size=20))
def test_parse_shape_never_fails_other_than_value_error(text: str) -> None:
    try:
        shape = parse_shape(text)
    except ValueError:
        return
    assert all(dim.lower >= 0 for dim in shape.dims)
    assert all(dim.upper is None or dim.upper > dim.lower or dim.is_static for dim in shape.dims)


@pytest.mark.parametrize("text", ["\u0663", "\u0661:\u0665", "\u00b2"])
def test_parse_dimension_takes_ascii_digits_only(text: str) -> None:
    with pytest.raises(ValueError, match="invalid dimension"):
        parse_dimension(text)


# --- --shape values ----------------------------------------------------------------------------


def test_shape_param_tuple_binds_to_the_anonymous_input() -> None:
    assert parse_shape_param("(1,3,-1,-1)") == {ANONYMOUS_INPUT: Shape.of(1, 3, -1, -1)}


@pytest.mark.parametrize("text", ["auto", " auto "])
def test_shape_param_auto(text: str) -> None:
    assert parse_shape_param(text) == {ANONYMOUS_INPUT: AUTO}


def test_shape_param_json_per_input() -> None:
    parsed = parse_shape_param('{"data": "(1,3,200:500,200:500)", "mask": "auto", "b": "(1)"}')
    assert parsed == {
        "data": Shape.of(1, 3, Dimension(200, 500), Dimension(200, 500)),
        "mask": AUTO,
        "b": Shape.of(1),
    }


def test_shape_param_empty_json_object_is_no_shape() -> None:
    assert parse_shape_param("{}") == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "automatic",
        "(1,3",
        "1,3,224,224",
        "(1,x)",
        "{",
        '{"data": (1,3)}',
        '{"data": [1, 3]}',  # lists are for config.json only
        '{"data": 3}',
        '{"data": "(1,,3)"}',
        '{"data": "AUTO"}',
        "[1, 3",
    ],
)
def test_shape_param_errors(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_shape_param(text)
    assert caught.value.text.startswith("Couldn't parse shape parameter")
    assert caught.value.code is ErrorCode.CONFIG_ERROR


def test_shape_param_json_array_is_an_error() -> None:
    # A JSON array is not an object; as a tuple string it has brackets, so it parses as a shape.
    assert parse_shape_param("[1,3]") == {ANONYMOUS_INPUT: Shape.of(1, 3)}
    with pytest.raises(ConfigError, match="Couldn't parse shape parameter"):
        parse_shape_param('["(1,3)"]')


@given(st.dictionaries(st.text(min_size=1, max_size=5), SHAPES, max_size=4))
def test_shape_param_json_round_trip(shapes: dict[str, Shape]) -> None:
    import json

    text = json.dumps(
        {
            name: "(" + ",".join(grammar(dim) for dim in shape.dims) + ")"
            for name, shape in shapes.items()
        }
    )
    assert parse_shape_param(text) == shapes


# --- config.json shapes ------------------------------------------------------------------------


def test_shape_object_accepts_lists_and_strings() -> None:
    assert parse_shape_object([1, 3, 224, 224]) == {ANONYMOUS_INPUT: Shape.of(1, 3, 224, 224)}
    assert parse_shape_object("(1,-1)") == {ANONYMOUS_INPUT: Shape.of(1, -1)}
    assert parse_shape_object({"a": [1, 2], "b": "(1,2:3)", "c": "auto"}) == {
        "a": Shape.of(1, 2),
        "b": Shape.of(1, Dimension(2, 3)),
        "c": AUTO,
    }
    assert parse_shape_object('{"a": [1, 2]}') == {"a": Shape.of(1, 2)}


@pytest.mark.parametrize(
    "value", [[1, -1], [1, True], [1.5], {"a": [-3]}, {"a": 7}, 7, None, "(x)", {"a": "(1"}]
)
def test_shape_object_errors(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^Couldn't parse shape parameter"):
        parse_shape_object(value)


# --- --batch_size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", Dimension.static(1)),
        (" 8 ", Dimension.static(8)),
        (4, Dimension.static(4)),
        ("-1", Dimension.any()),
        (-1, Dimension.any()),
        ("1:8", Dimension.range(1, 8)),
        ("auto", AUTO),
    ],
)
def test_batch_size_forms(text: str | int, expected: object) -> None:
    assert parse_batch_size(text) == expected


@pytest.mark.parametrize(
    "text", ["0", 0, "0:4", "4:4", "8:1", "-2", "x", "", "1.5", "(1)", "AUTO", "\u0663"]
)
def test_batch_size_errors(text: str | int) -> None:
    with pytest.raises(ConfigError, match=r"^Couldn't parse batch_size parameter"):
        parse_batch_size(text)


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=1, max_value=10**6))
def test_batch_size_range_round_trip(lower: int, span: int) -> None:
    assert parse_batch_size(f"{lower}:{lower + span}") == Dimension.range(lower, lower + span)
