"""nnopt.store.atomic: the one atomic writer (unique temp names, cleanup on error, modes)."""

from __future__ import annotations

import json
import os

import pytest

from nnopt.store.atomic import atomic_path, write_bytes_atomic, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "t.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer died")
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_two_writers_get_their_own_temp_names(tmp_path):
    target = tmp_path / "t.bin"
    with atomic_path(target) as one, atomic_path(target) as two:
        assert one != two and one.parent == two.parent == tmp_path
        one.write_bytes(b"1")
        two.write_bytes(b"2")
    assert target.read_bytes() == b"1"  # the outer writer finished last


def test_key_order_is_kept_and_the_umask_decides_the_mode(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_json_atomic(tmp_path / "p.json", {"b": 1, "a": 2})
        assert list(json.loads(path.read_text())) == ["b", "a"]  # random params keep their order
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert write_bytes_atomic(tmp_path / "x", b"").stat().st_mode & 0o777 == 0o666 & ~old
