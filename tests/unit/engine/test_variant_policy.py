"""Which shapes earn a variant and which variants stay: the pure policy with a fake clock."""

from __future__ import annotations

from ovserve.config.variants import VariantConfig
from ovserve.engine.variant_policy import MAX_TRACKED_SHAPES, VariantPolicy

A = ((1, 3, 64, 64),)
B = ((1, 3, 96, 64),)
C = ((1, 3, 128, 64),)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock, *, max_variants: int = 2, threshold: int = 3) -> VariantPolicy[str]:
    config = VariantConfig(max_variants=max_variants, threshold=threshold, window_seconds=10.0)
    return VariantPolicy(config, clock)


def test_a_shape_is_built_on_its_threshold_th_request_within_the_window() -> None:
    clock = Clock()
    p = policy(clock)
    assert [p.observe(A) for _ in range(2)] == [False, False]
    assert p.observe(A) is True
    assert p.building == A


def test_requests_spread_wider_than_the_window_do_not_count() -> None:
    clock = Clock()
    p = policy(clock)
    for _ in range(6):
        assert p.observe(A) is False
        clock.now += 6.0  # any three requests span 12 s > 10 s
    p.observe(B)
    clock.now += 5.0
    p.observe(B)
    clock.now += 5.0
    assert p.observe(B) is True  # 10 s: inside the window


def test_one_build_at_a_time_then_the_next_repeated_shape() -> None:
    clock = Clock()
    p = policy(clock)
    for _ in range(3):
        p.observe(A)
    assert [p.observe(B) for _ in range(3)] == [False, False, False]  # A is still building
    assert p.built(A, "variant-a") == []
    assert p.building is None
    assert p.observe(B) is True  # B's count survived while A built


def test_lookup_serves_built_variants_and_counts_them() -> None:
    clock = Clock()
    p = policy(clock)
    assert p.lookup(A) is None
    for _ in range(3):
        p.observe(A)
    p.built(A, "variant-a")
    assert p.lookup(A) == "variant-a"
    assert p.lookup(B) is None
    assert p.counts.served == 1
    assert p.observe(A) is False  # already has one


def test_lru_eviction_drops_the_least_recently_served() -> None:
    clock = Clock()
    p = policy(clock)
    assert p.built(A, "a") == []
    assert p.built(B, "b") == []
    p.lookup(A)  # B is now the least recently served
    assert p.built(C, "c") == [(B, "b")]
    assert p.keys() == [A, C]
    assert p.counts.compiled == 3
    assert p.counts.evicted == 1


def test_max_variants_zero_turns_the_feature_off() -> None:
    clock = Clock()
    p = policy(clock, max_variants=0)
    assert not any(p.observe(A) for _ in range(10))


def test_threshold_one_builds_on_first_sight() -> None:
    assert policy(Clock(), threshold=1).observe(A) is True


def test_a_failed_shape_is_not_tried_again() -> None:
    clock = Clock()
    p = policy(clock)
    for _ in range(3):
        p.observe(A)
    p.failed(A)
    assert p.building is None
    assert not any(p.observe(A) for _ in range(10))
    assert p.counts.failed == 1


def test_counting_memory_is_bounded_by_the_tracked_shapes_cap() -> None:
    clock = Clock()
    p = policy(clock, threshold=2)
    p.observe(A)
    for height in range(MAX_TRACKED_SHAPES):
        p.observe(((1, 3, 1000 + height, 64),))
    # A's first sighting was pushed out: it needs two fresh requests again.
    assert p.observe(A) is False
    assert p.observe(A) is True


def test_clear_hands_back_every_variant() -> None:
    clock = Clock()
    p = policy(clock)
    p.built(A, "a")
    p.built(B, "b")
    assert sorted(p.clear()) == ["a", "b"]
    assert len(p) == 0
