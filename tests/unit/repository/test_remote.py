"""RemoteSource over an in-memory object store: listing, downloads, clean-up, flat layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovserve.config.model_path import RemotePath
from ovserve.errors import ConfigError
from ovserve.repository.remote import RemoteSource


class MemoryStore:
    """Objects in a dict; counts downloads."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.downloads: list[str] = []
        self.fail_on = ""

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def download(self, key: str, target: Path) -> None:
        if key == self.fail_on:
            raise ConfigError(f"cannot download {key}")
        self.downloads.append(key)
        target.write_bytes(self.objects[key])


PATH = RemotePath("s3", "bucket", "models/m")


def source(objects: dict[str, bytes]) -> tuple[RemoteSource, MemoryStore]:
    store = MemoryStore(objects)
    return RemoteSource(PATH, "m", store=store), store


def test_versions_are_listed_and_downloaded_on_fetch() -> None:
    remote, store = source(
        {
            "models/m/1/model.xml": b"x1",
            "models/m/1/model.bin": b"b1",
            "models/m/2/sub/model.onnx": b"o2",
            "models/m/abc/model.onnx": b"",
            "models/m/.staging/model.onnx": b"",
            "models/m/readme.txt": b"",
            "models/other/1/model.onnx": b"",
        }
    )
    scan = remote.scan()
    assert sorted(scan.versions) == [1, 2]
    assert scan.skipped == ("abc",)
    assert store.downloads == []
    one = remote.fetch(1, scan.versions[1])
    assert one == scan.versions[1]
    assert (one / "model.xml").read_bytes() == b"x1"
    assert (one / "model.bin").read_bytes() == b"b1"
    assert (remote.fetch(2, scan.versions[2]) / "sub" / "model.onnx").read_bytes() == b"o2"
    assert one.parent.stat().st_mode & 0o077 == 0
    remote.fetch(1, scan.versions[1])
    assert len(store.downloads) == 3, "a version already on disk is not downloaded again"
    remote.release(1)
    assert not one.exists()
    assert scan.versions[2].exists()
    remote.close()
    assert not one.parent.exists()


def test_flat_layout_is_version_1(caplog: pytest.LogCaptureFixture) -> None:
    remote, _ = source({"models/m/model.onnx": b"o", "models/m/notes.txt": b"n"})
    caplog.set_level("INFO")
    scan = remote.scan()
    assert list(scan.versions) == [1]
    folder = remote.fetch(1, scan.versions[1])
    assert sorted(path.name for path in folder.iterdir()) == ["model.onnx", "notes.txt"]
    assert "serving them as version 1" in caplog.text
    remote.scan()
    assert caplog.text.count("serving them as version 1") == 1, "said once, not every poll"
    remote.close()


def test_a_version_is_listed_once_its_model_is_complete() -> None:
    remote, store = source({"models/m/1/model.onnx": b"o", "models/m/2/model.bin": b"b"})
    assert list(remote.scan().versions) == [1], "2 is still being uploaded"
    store.objects["models/m/2/model.xml"] = b"x"
    assert list(remote.scan().versions) == [1, 2]
    remote.close()


def test_a_failed_download_leaves_nothing_behind() -> None:
    remote, store = source({"models/m/1/a.onnx": b"a", "models/m/1/b.bin": b"b"})
    store.fail_on = "models/m/1/b.bin"
    scan = remote.scan()
    with pytest.raises(ConfigError, match="cannot download"):
        remote.fetch(1, scan.versions[1])
    root = scan.versions[1].parent
    assert list(root.iterdir()) == []
    remote.close()


def test_unlisted_version_and_unsafe_keys() -> None:
    remote, _ = source({"models/m/1/../evil.onnx": b"", "models/m/1/model.onnx": b""})
    scan = remote.scan()
    with pytest.raises(ConfigError, match="cannot be stored as a local file"):
        remote.fetch(1, scan.versions[1])
    with pytest.raises(ConfigError, match="version 7 is not listed"):
        remote.fetch(7, scan.versions[1].parent / "7")
    remote.close()


def test_the_bucket_root() -> None:
    store = MemoryStore({"1/model.onnx": b"o"})
    remote = RemoteSource(RemotePath("gs", "bucket", ""), "m", store=store)
    scan = remote.scan()
    assert (remote.fetch(1, scan.versions[1]) / "model.onnx").read_bytes() == b"o"
    remote.close()
