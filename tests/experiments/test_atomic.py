"""Atomic writes: new files get the mode a plain open() would give, and reading the umask
leaves it unchanged (no window in which another thread sees a different one)."""

from __future__ import annotations

import os
import stat

import pytest

from hamopt.experiments import atomic


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_new_file_mode_follows_umask(tmp_path, umask_027):
    target = tmp_path / "table.csv"
    atomic.atomic_write_text(target, "a,b\n1,2\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert target.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_reading_the_umask_does_not_set_it(umask_027, monkeypatch):
    def forbidden(mask: int) -> int:
        raise AssertionError("os.umask was called: another thread could see the temporary mask")

    monkeypatch.setattr(atomic.os, "umask", forbidden)
    assert atomic._current_umask() == 0o027


def test_umask_fallback_restores_the_mask(umask_027, monkeypatch):
    import builtins

    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if str(path).startswith("/proc/"):
            raise OSError("no /proc here")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert atomic._current_umask() == 0o027
    assert os.umask(0o027) == 0o027


def test_failed_write_leaves_old_file(tmp_path):
    target = tmp_path / "manifest.json"
    atomic.atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomic._atomic_target(target):
        raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
