"""Builds beyond TERESA_MAX_CONCURRENT_BUILDS wait in line, hear their place, and never lose a slot."""

from __future__ import annotations

import asyncio

import pytest

from controller.build_slots import BuildSlots


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def _hold(slots: BuildSlots, out: Lines, started: list[str], name: str, release: asyncio.Event) -> None:
    async with slots.slot(out):
        started.append(name)
        await release.wait()


@pytest.mark.asyncio
async def test_builds_beyond_the_limit_wait_in_order_and_hear_their_place() -> None:
    slots = BuildSlots(1)
    started: list[str] = []
    gates = {name: asyncio.Event() for name in "abc"}
    outs = {name: Lines() for name in "abc"}
    tasks = {}
    for name in "abc":
        tasks[name] = asyncio.create_task(_hold(slots, outs[name], started, name, gates[name]))
        await asyncio.sleep(0)  # each joins the line before the next
    await asyncio.wait_for(_until(lambda: started == ["a"] and len(slots.waiting) == 2), 5)
    assert outs["a"].lines == []
    assert outs["b"].lines == ["-----> Waiting for a build slot (0 ahead)"]
    assert outs["c"].lines == ["-----> Waiting for a build slot (1 ahead)"]
    gates["a"].set()
    await asyncio.wait_for(_until(lambda: started == ["a", "b"]), 5)
    assert outs["c"].lines[-1] == "-----> Waiting for a build slot (0 ahead)"
    gates["b"].set()
    gates["c"].set()
    await asyncio.gather(*tasks.values())
    assert started == ["a", "b", "c"] and slots.running == 0 and not slots.waiting


@pytest.mark.asyncio
async def test_a_push_cancelled_while_waiting_gives_up_its_place_and_no_slot_is_lost() -> None:
    slots = BuildSlots(1)
    started: list[str] = []
    first, second, third = asyncio.Event(), asyncio.Event(), asyncio.Event()
    a = asyncio.create_task(_hold(slots, Lines(), started, "a", first))
    await asyncio.wait_for(_until(lambda: started == ["a"]), 5)
    b = asyncio.create_task(_hold(slots, Lines(), started, "b", second))
    c = asyncio.create_task(_hold(slots, Lines(), started, "c", third))
    await asyncio.wait_for(_until(lambda: len(slots.waiting) == 2), 5)
    b.cancel()
    first.set()
    await asyncio.wait_for(_until(lambda: started == ["a", "c"]), 5)
    third.set()
    await asyncio.gather(a, c)
    assert (await asyncio.gather(b, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    assert slots.running == 0 and not slots.waiting


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.01)
