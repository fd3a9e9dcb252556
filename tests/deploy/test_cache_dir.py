"""Where the exported ONNX graph goes (model/export.py `cache_dir()`): the pod runs with a read-only
root filesystem and a writable /tmp only, and the image points XDG_CACHE_HOME there, so the
cache directory must follow IMAGEGATE_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache."""

from __future__ import annotations

from pathlib import Path

from model import export


def test_imagegate_cache_dir_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", str(tmp_path / "ig"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export.cache_dir() == tmp_path / "ig" / "models"


def test_xdg_cache_home_is_honoured(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGEGATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert export.cache_dir() == tmp_path / "xdg" / "imagegate" / "models"


def test_home_cache_without_either(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGEGATE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export.cache_dir() == Path(tmp_path / "home" / ".cache" / "imagegate" / "models")


def test_empty_variables_count_as_unset(monkeypatch, tmp_path):
    # The XDG spec: an empty XDG_CACHE_HOME means the default; likewise an empty IMAGEGATE_CACHE_DIR.
    monkeypatch.setenv("IMAGEGATE_CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export.cache_dir() == tmp_path / "home" / ".cache" / "imagegate" / "models"


def test_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGEGATE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export.cache_dir() == tmp_path / "home" / ".cache" / "imagegate" / "models"
