"""The graceful part of a front-end's stop: wait while busy, within the grace, then cancel."""

from __future__ import annotations

import asyncio

from ovserve.frontends.drain import drain

from _async import async_test


@async_test
async def test_a_task_that_ends_within_the_grace_is_waited_for() -> None:
    tasks = {asyncio.create_task(asyncio.sleep(0.1))}
    loop = asyncio.get_running_loop()
    started = loop.time()
    await drain(
        lambda: {t for t in tasks if not t.done()}, lambda: not all(t.done() for t in tasks), 5
    )
    assert all(task.done() and not task.cancelled() for task in tasks)
    assert loop.time() - started < 1


@async_test
async def test_a_task_past_the_grace_is_cancelled() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await drain(lambda: {task} if not task.done() else set(), lambda: not task.done(), 0.2)
    await asyncio.sleep(0)
    assert task.cancelled()
    assert 0.15 < loop.time() - started < 1


@async_test
async def test_busy_without_tasks_is_polled_until_it_clears() -> None:
    """A request still arriving is busy before it becomes a task."""
    loop = asyncio.get_running_loop()
    clears_at = loop.time() + 0.15
    await drain(set, lambda: loop.time() < clears_at, 5)
    assert clears_at <= loop.time() < clears_at + 0.5
