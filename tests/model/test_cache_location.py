"""Every cache of the project (vocabularies, TensorRT engines) lives under one root."""
from __future__ import annotations

from pathlib import Path

from ovsam_model.backends.engine_cache import EngineCache
from ovsam_model.cache_location import cache_root
from ovsam_model.vocabulary import default_cache_dir


def test_ovsam_cache_dir_moves_every_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OVSAM_CACHE_DIR", str(tmp_path / "root"))
    assert cache_root() == tmp_path / "root"
    assert default_cache_dir() == tmp_path / "root" / "vocab"
    assert EngineCache().root == tmp_path / "root" / "tensorrt"


def test_xdg_cache_home_is_honoured_without_ovsam_cache_dir(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OVSAM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ovsam_ros" / "vocab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "ovsam_ros"
