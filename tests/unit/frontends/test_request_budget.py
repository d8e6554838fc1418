"""The request budget: first come first served, bounded waits, a trim when it empties."""

from __future__ import annotations

import asyncio

import pytest

from ovserve.errors import OvserveError
from ovserve.frontends import memory_trim
from ovserve.frontends.memory_trim import Trimmer
from ovserve.frontends.request_budget import SMALL_REQUEST_BYTES, RequestBudget


def test_small_bodies_and_an_unlimited_budget_cost_nothing() -> None:
    assert RequestBudget(10**9).cost(SMALL_REQUEST_BYTES - 1) == 0
    assert RequestBudget(0).cost(10**9) == 0
    assert RequestBudget(10**6).cost(10**9) == 10**6  # alone, but it runs


def test_waiters_are_served_in_order_and_time_out() -> None:
    async def body() -> list[str]:
        budget = RequestBudget(100, wait_seconds=0.2)
        order: list[str] = []
        assert budget.try_take(80)

        async def wait(name: str, cost: int) -> None:
            try:
                await budget.take(cost)
            except OvserveError as error:
                order.append(f"{name} refused: {error.code.name}")
                return
            order.append(name)

        first = asyncio.create_task(wait("first", 50))
        second = asyncio.create_task(wait("second", 10))  # fits, but waits behind first
        await asyncio.sleep(0.01)
        assert order == []
        budget.give_back(80)
        await asyncio.gather(first, second)
        assert budget.in_use == 60
        late = asyncio.create_task(wait("late", 90))
        await late
        return order

    assert asyncio.run(body()) == ["first", "second", "late refused: RESOURCE_EXHAUSTED"]


def test_memory_is_trimmed_once_the_last_large_request_is_done() -> None:
    calls: list[int] = []

    def fake_trim(pad: int) -> int:
        calls.append(pad)
        return 1

    async def body() -> None:
        budget = RequestBudget(10**6, trimmer=Trimmer(fake_trim))
        assert budget.try_take(100_000)
        assert budget.try_take(100_000)
        budget.give_back(100_000)
        await asyncio.sleep(0.1)
        assert calls == []
        budget.give_back(100_000)
        await asyncio.sleep(0.1)
        assert calls == [0]

    asyncio.run(body())


def test_no_trim_while_large_requests_overlap_without_pause() -> None:
    """Large requests one after another, each taking its share before the last gives its own
    back: the budget was idle once (a trim is asked for) but never quiet afterwards, so nothing
    is trimmed (a trim would hand back the pages the next request's buffers are about to fault
    in again); once they stop, one trim."""
    calls: list[int] = []

    def fake_trim(pad: int) -> int:
        calls.append(pad)
        return 1

    async def body() -> None:
        loop = asyncio.get_running_loop()
        budget = RequestBudget(10**6, trimmer=Trimmer(fake_trim))
        assert budget.try_take(100_000)
        budget.give_back(100_000)  # idle: a trim is scheduled ...
        assert budget.try_take(100_000)  # ... but requests go on, overlapping
        started = loop.time()
        while loop.time() - started < 1.5 * memory_trim.MIN_INTERVAL:
            assert budget.try_take(100_000)
            budget.give_back(100_000)
            await asyncio.sleep(memory_trim.QUIET / 5)
        assert calls == []
        budget.give_back(100_000)
        await asyncio.sleep(3 * memory_trim.QUIET)
        assert calls == [0]

    asyncio.run(body())


@pytest.mark.parametrize("cancel_after", [0.0, 0.05])
def test_a_cancelled_waiter_leaves_nothing_behind(cancel_after: float) -> None:
    async def body() -> None:
        budget = RequestBudget(100, wait_seconds=5)
        assert budget.try_take(100)
        task = asyncio.create_task(budget.take(50))
        await asyncio.sleep(cancel_after)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        budget.give_back(100)
        assert budget.in_use == 0
        assert budget.try_take(100)

    asyncio.run(body())
