"""The poller and config reload, over a repository on disk served by the FakeEngine."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from ovserve.config.config_file import read_config_file
from ovserve.errors import ConfigError, ModelRetired, VersionNotFound
from ovserve.metrics import GRPC, TFS, Endpoint
from ovserve.serving.model_instance import ModelVersionState as S
from ovserve.serving.model_manager import ModelManager
from ovserve.serving.reloader import CONFIG_NOT_FOUND, RELOAD_FAILED, Reloader
from ovserve.serving.service import ServingService
from ovserve.tensors import DataType, RequestTensor

from _fake_engine import FakeEngine

T = TypeVar("T")
AddVersion = Callable[..., Path]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


INFER = Endpoint(TFS, GRPC, "Predict", versioned=True)
STATUS = Endpoint(TFS, GRPC, "GetModelStatus", versioned=False)


class Repo:
    """A config.json next to model folders, and the manager/reloader serving it."""

    def __init__(self, root: Path, engine: FakeEngine, add_version: AddVersion) -> None:
        self.root = root
        self.path = root / "config.json"
        self.engine = engine
        self.add_version = add_version
        self.models = ModelManager(engine)
        self.service = ServingService(self.models)
        self.reloader = Reloader(self.models, poll_seconds=0, config_path=self.path)
        self.service.reloader = self.reloader

    def write(self, *entries: dict[str, Any], raw: str | None = None) -> None:
        text = raw if raw is not None else json.dumps({"model_config_list": list(entries)})
        self.path.write_text(text)

    def folder(self, name: str, *versions: int, broken: tuple[int, ...] = ()) -> str:
        for version in versions:
            self.add_version(self.root / name, version, broken=version in broken)
        (self.root / name).mkdir(exist_ok=True)
        return name

    async def start(self) -> None:
        await self.reloader.apply(read_config_file(self.path))

    def states(self, name: str) -> dict[int, S]:
        return {status.version: status.state for status in self.service.model_status(STATUS, name)}

    def errors(self, name: str) -> dict[int, str]:
        return {status.version: status.error for status in self.service.model_status(STATUS, name)}


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop (and its worker threads) run until ``condition`` holds, at most 5 s."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


def entry(name: str, base_path: str, **extra: Any) -> dict[str, Any]:
    return {"config": {"name": name, "base_path": base_path, **extra}}


@pytest.fixture
def repo(tmp_path: Path, engine: FakeEngine, add_version: AddVersion) -> Repo:
    return Repo(tmp_path, engine, add_version)


def test_two_models_and_a_bad_entry_start_together(repo: Repo) -> None:
    repo.write(
        entry("a", repo.folder("a", 1, 2), model_version_policy={"all": {}}),
        entry("b", repo.folder("b", 3)),
        entry("bad", "b", shape="(1,x)"),
    )
    run(repo.start())
    assert repo.states("a") == {1: S.AVAILABLE, 2: S.AVAILABLE}
    assert repo.states("b") == {3: S.AVAILABLE}
    ((version, error),) = repo.errors("bad").items()
    assert version == 0
    assert "model_config_list[2].config.shape: Couldn't parse shape parameter" in error
    with pytest.raises(VersionNotFound):
        repo.models.instance("bad")


def test_missing_base_path_shows_in_status_and_others_serve(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)), entry("gone", "nowhere"))
    run(repo.start())
    assert repo.states("a") == {1: S.AVAILABLE}
    assert "does not exist" in repo.errors("gone")[0]


def test_new_and_removed_version_folders(repo: Repo) -> None:
    repo.write(
        entry("a", repo.folder("a", 1), model_version_policy={"latest": {"num_versions": 2}})
    )

    async def scenario() -> list[bool]:
        await repo.start()
        unchanged = await repo.reloader.poll_once()
        repo.folder("a", 2, 3)
        added = await repo.reloader.poll_once()
        assert repo.models.instance("a").version == 3
        shutil.rmtree(repo.root / "a" / "3")
        removed = await repo.reloader.poll_once()
        return [unchanged, added, removed]

    assert run(scenario()) == [False, True, True]
    # latest 2 of {1, 2}: version 1 comes back once 3 is gone
    assert repo.states("a") == {1: S.AVAILABLE, 2: S.AVAILABLE, 3: S.END}
    assert repo.models.instance("a").version == 2


def test_folders_named_0_and_abc_are_logged_once(
    repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    repo.write(entry("a", repo.folder("a", 1)))
    (repo.root / "a" / "0").mkdir()
    (repo.root / "a" / "abc").mkdir()

    async def scenario() -> None:
        await repo.start()
        await repo.reloader.poll_once()
        await repo.reloader.poll_once()

    with caplog.at_level(logging.WARNING):
        run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE}
    warnings = [r.message for r in caplog.records if "ignoring 0, abc" in r.message]
    assert len(warnings) == 1
    assert "expected version directory name to be a number greater than 0" in warnings[0]


def test_only_invalid_folders_show_in_status(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a")))
    (repo.root / "a" / "0").mkdir()
    run(repo.start())
    assert "No version found for model a" in repo.errors("a")[0]


def test_broken_new_version_leaves_the_others_serving(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1), model_version_policy={"all": {}}))

    async def scenario() -> None:
        await repo.start()
        repo.folder("a", 2, broken=(2,))
        await repo.reloader.poll_once()
        await repo.reloader.poll_once()  # not retried while unchanged

    run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE, 2: S.END}
    assert "cannot read model file corrupt2.xml" in repo.errors("a")[2]
    assert repo.models.instance("a").version == 1
    assert [path.name for path in repo.engine.loaded].count("corrupt2.xml") == 1


def test_config_edits_add_remove_and_reload(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)), entry("b", repo.folder("b", 2)))

    async def scenario() -> None:
        await repo.start()
        loads = len(repo.engine.loaded)
        # policy change only: versions re-selected, nothing recompiled
        repo.folder("a", 2)
        repo.write(
            entry("a", "a", model_version_policy={"all": {}}),
            entry("b", "b"),
            entry("c", repo.folder("c", 5)),
        )
        assert await repo.reloader.poll_once()
        assert repo.states("a") == {1: S.AVAILABLE, 2: S.AVAILABLE}
        assert repo.states("c") == {5: S.AVAILABLE}
        assert len(repo.engine.loaded) == loads + 2  # a/2 and c/5 only
        # a changed setting recompiles b's served version; a is removed
        repo.write(entry("b", "b", nireq=3), entry("c", "c"))
        assert await repo.reloader.poll_once()
        assert repo.models.get("b").versions[2].config.nireq == 3
        assert repo.states("a") == {1: S.END, 2: S.END}
        assert not await repo.reloader.poll_once()

    run(scenario())
    with pytest.raises(ModelRetired):
        repo.models.instance("a", 1)


def test_removed_model_comes_back(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        await repo.start()
        repo.write()
        await repo.reloader.poll_once()
        assert repo.states("a") == {1: S.END}
        repo.write(entry("a", "a"))
        await repo.reloader.poll_once()

    run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE}


def test_invalid_file_applies_nothing_and_is_logged_once(
    repo: Repo, caplog: pytest.LogCaptureFixture
) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        await repo.start()
        repo.write(raw='{"model_config_list": [')
        await repo.reloader.poll_once()
        await repo.reloader.poll_once()
        repo.write(entry("a", "a", shapes="(1,3)"))
        await repo.reloader.poll_once()
        repo.path.unlink()
        await repo.reloader.poll_once()
        await repo.reloader.poll_once()

    with caplog.at_level(logging.ERROR):
        run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE}
    messages = [record.message for record in caplog.records]
    assert sum("is not valid JSON" in message for message in messages) == 1
    assert sum("unknown key 'shapes'" in message for message in messages) == 1
    assert sum("Config file not found or cannot open" in message for message in messages) == 1


def test_invalid_entry_for_a_served_model_keeps_it_serving(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        await repo.start()
        repo.write(entry("a", "a", shape="(1,"))
        await repo.reloader.poll_once()

    run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE}
    assert "config.shape: Couldn't parse shape parameter" in repo.errors("a")[1]
    assert repo.models.instance("a").version == 1


def test_duplicate_names_fail_that_name(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)), entry("a", "a"), entry("b", repo.folder("b", 1)))
    run(repo.start())
    assert "Duplicated model name a" in repo.errors("a")[0]
    assert repo.states("b") == {1: S.AVAILABLE}


def test_failed_recompile_keeps_the_served_version(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        await repo.start()
        # the model file turns to garbage while serving; a config edit then recompiles it
        for path in (repo.root / "a" / "1").iterdir():
            path.unlink()
        repo.add_version(repo.root / "a", 1, broken=True)
        repo.write(entry("a", "a", nireq=2))
        await repo.reloader.poll_once()

    run(scenario())
    assert repo.states("a") == {1: S.AVAILABLE}
    assert "Reloading with the new configuration failed, still serving" in repo.errors("a")[1]
    assert "corrupt1.xml" in repo.errors("a")[1]


def test_in_flight_request_finishes_across_a_recompile(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))
    release = asyncio.Event()

    async def scenario() -> list[float]:
        await repo.start()
        fake = repo.engine.last("v1.xml")
        original = fake.infer

        async def slow_infer(inputs: Any, outputs: Any = None) -> Any:
            await release.wait()
            return await original(inputs, outputs)

        fake.infer = slow_infer  # type: ignore[method-assign]
        tensor = RequestTensor("data", DataType.FP32, (1, 3), np.ones(3, np.float32))
        request = asyncio.create_task(repo.service.infer(INFER, "a", None, [tensor]))
        await asyncio.sleep(0)
        old = repo.models.instance("a")
        repo.write(entry("a", "a", nireq=2))
        poll = asyncio.create_task(repo.reloader.poll_once())
        await until(lambda: old.state is S.UNLOADING)
        assert repo.models.instance("a") is not old  # swapped in while the request runs
        assert not request.done()
        release.set()
        result = await request
        await poll
        assert old.state is S.END
        assert fake.close_calls == 1
        assert repo.engine.last("v1.xml") is not fake  # recompiled, not reused
        assert not repo.engine.last("v1.xml").closed
        return result.outputs["out"].ravel().tolist()

    assert run(scenario()) == [3.0, 3.0, 3.0]


def test_reload_endpoint_semantics(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        await repo.start()
        assert not await repo.service.reload_config()
        repo.write(entry("a", "a"), entry("b", repo.folder("b", 1)))
        assert await repo.service.reload_config()
        repo.write(raw="[")
        with pytest.raises(ConfigError) as invalid:
            await repo.service.reload_config()
        assert invalid.value.text == RELOAD_FAILED
        repo.path.unlink()
        with pytest.raises(ConfigError) as missing:
            await repo.service.reload_config()
        assert missing.value.text == CONFIG_NOT_FOUND

    run(scenario())
    assert repo.states("b") == {1: S.AVAILABLE}


def test_no_config_file_reload_is_refused(engine: FakeEngine) -> None:
    reloader = Reloader(ModelManager(engine), poll_seconds=0)
    with pytest.raises(ConfigError, match=CONFIG_NOT_FOUND):
        run(reloader.reload())


def test_poller_runs_until_stopped(repo: Repo) -> None:
    repo.write(entry("a", repo.folder("a", 1)))

    async def scenario() -> None:
        reloader = Reloader(repo.models, poll_seconds=0.01, config_path=repo.path)
        await reloader.apply(read_config_file(repo.path))
        reloader.start()
        repo.folder("a", 2)
        await until(lambda: repo.models.get("a").available()[-1].version == 2)
        await reloader.stop()

    run(scenario())
    assert repo.states("a") == {1: S.END, 2: S.AVAILABLE}


def test_zero_poll_period_starts_no_poller(repo: Repo) -> None:
    """With period 0 no task is started; with a period the poller task exists until stop."""

    def pollers() -> list[str]:
        return [t.get_name() for t in asyncio.all_tasks() if "poller" in t.get_name()]

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        repo.reloader.start()
        idle = pollers()
        await repo.reloader.stop()
        polling = Reloader(repo.models, poll_seconds=30, config_path=repo.path)
        polling.start()
        running = pollers()
        await polling.stop()
        return idle, running, pollers()

    assert run(scenario()) == ([], ["file-system-poller"], [])
