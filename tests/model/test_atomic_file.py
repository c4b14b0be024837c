"""write_atomically: the one way the project writes a file that something else may read (weights,
checkpoints, vocabularies, engine caches, scene caches, downloads)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from ovsam_model.atomic_file import write_atomically
from ovsam_model.synthetic.scenes import SceneSet


def test_writes_the_whole_file_and_creates_its_folder(tmp_path) -> None:
    path = tmp_path / "new" / "folder" / "file.bin"
    assert write_atomically(path, lambda handle: handle.write(b"abc" * 1000)) == path
    assert path.read_bytes() == b"abc" * 1000
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it(tmp_path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def fails_halfway(handle) -> None:
        handle.write(b"new and half")
        raise KeyboardInterrupt  # Ctrl-C while writing

    with pytest.raises(KeyboardInterrupt):
        write_atomically(path, fails_halfway)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_the_file_gets_the_permissions_open_gives(tmp_path) -> None:
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    written = write_atomically(tmp_path / "written", lambda handle: handle.write(b"x"))
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


def test_an_interrupted_scene_cache_leaves_no_file_a_later_run_would_load(tmp_path, monkeypatch) -> None:
    scenes = SceneSet(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8), np.uint8), np.full((2, 6), -1))
    path = tmp_path / "scenes.npz"
    original = np.savez

    def killed_after_the_images(file, **arrays) -> None:
        original(file, images=arrays["images"])
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_after_the_images)
    with pytest.raises(KeyboardInterrupt):
        scenes.save(path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(np, "savez", original)
    scenes.save(path)
    loaded = SceneSet.load(path)
    assert np.array_equal(loaded.labels, scenes.labels) and loaded.images.shape == (2, 8, 8, 3)
