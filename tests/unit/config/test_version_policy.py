"""Model version policies: parsing OVMS's JSON forms and selecting versions."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovserve.config.version_policy import (
    DEFAULT_POLICY,
    AllVersions,
    LatestVersions,
    SpecificVersions,
    VersionPolicy,
    parse_version_policy,
)
from ovserve.errors import ConfigError

VERSIONS = st.sets(st.integers(min_value=1, max_value=1000), max_size=10)


def test_default_is_latest_one() -> None:
    assert LatestVersions(1) == DEFAULT_POLICY
    assert DEFAULT_POLICY.select([1, 3, 2]) == [3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"latest": {"num_versions": 2}}', LatestVersions(2)),
        ('{"latest": {}}', LatestVersions(1)),
        ('{"all": {}}', AllVersions()),
        ('{"specific": {"versions": [1, 3]}}', SpecificVersions(frozenset({1, 3}))),
        (' { "specific" : { "versions" : [ 3 ] } } ', SpecificVersions(frozenset({3}))),
    ],
)
def test_parse_json_text(text: str, expected: object) -> None:
    assert parse_version_policy(text) == expected


def test_parse_decoded_object() -> None:
    assert parse_version_policy({"latest": {"num_versions": 3}}) == LatestVersions(3)
    assert parse_version_policy({"all": {}}) == AllVersions()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{", "not valid JSON"),
        ("latest", "not valid JSON"),
        ("[]", "must be one of"),
        ("{}", "must be one of"),
        ('{"all": {}, "latest": {}}', "must be one of"),
        ('{"newest": {}}', "Unknown model version policy 'newest'"),
        ('{"all": []}', "must hold an object"),
        ('{"all": {"x": 1}}', '"all" takes no fields'),
        ('{"latest": {"num_versions": 0}}', '"latest" needs a positive "num_versions"'),
        ('{"latest": {"num_versions": -1}}', '"latest" needs a positive "num_versions"'),
        ('{"latest": {"num_versions": "2"}}', '"latest" needs a positive "num_versions"'),
        ('{"latest": {"num_versions": true}}', '"latest" needs a positive "num_versions"'),
        ('{"latest": {"num_versions": 1.5}}', '"latest" needs a positive "num_versions"'),
        ('{"latest": {"count": 1}}', '"latest" needs a positive "num_versions"'),
        ('{"specific": {}}', '"specific" needs a list of positive "versions"'),
        ('{"specific": {"versions": []}}', '"specific" needs a list of positive "versions"'),
        ('{"specific": {"versions": [0]}}', '"specific" needs a list of positive "versions"'),
        ('{"specific": {"versions": 1}}', '"specific" needs a list of positive "versions"'),
        ('{"specific": {"versions": ["1"]}}', '"specific" needs a list of positive "versions"'),
        ('{"specific": {"versions": [1], "x": 2}}', '"specific" needs a list'),
        (7, "must be one of"),
    ],
)
def test_parse_errors(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_version_policy(value)
    assert message in caught.value.text


@given(VERSIONS, st.integers(min_value=1, max_value=12))
def test_latest_selects_the_highest(available: set[int], count: int) -> None:
    selected = LatestVersions(count).select(available)
    assert set(selected) <= available
    assert all(low < high for low, high in itertools.pairwise(selected))
    assert len(selected) == min(count, len(available))
    assert all(version >= other for version in selected for other in available - set(selected))


@given(VERSIONS)
def test_all_selects_everything_ascending(available: set[int]) -> None:
    assert AllVersions().select(available) == sorted(available)


@given(VERSIONS, st.sets(st.integers(min_value=1, max_value=1000), min_size=1, max_size=5))
def test_specific_selects_those_on_disk(available: set[int], wanted: set[int]) -> None:
    selected = SpecificVersions(frozenset(wanted)).select(available)
    assert all(low < high for low, high in itertools.pairwise(selected))
    for version in available | wanted:
        assert (version in selected) == (version in available and version in wanted)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (LatestVersions(1), [9]),
        (LatestVersions(2), [7, 9]),
        (LatestVersions(5), [1, 2, 7, 9]),
        (AllVersions(), [1, 2, 7, 9]),
        (SpecificVersions(frozenset({2, 3, 9})), [2, 9]),
    ],
)
def test_selection_examples(policy: VersionPolicy, expected: list[int]) -> None:
    assert policy.select({9, 1, 7, 2}) == expected


def test_selection_accepts_any_iterable() -> None:
    on_disk = {3: "a", 1: "b", 2: "c"}
    assert LatestVersions(2).select(on_disk) == [2, 3]
    assert AllVersions().select(iter([2, 1])) == [1, 2]
    assert SpecificVersions(frozenset({2, 9})).select(on_disk) == [2]
