import errno
import json

import pytest
import torch

from cnnlab.errors import CheckpointError
from cnnlab.train import checkpoint as ckpt


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    ckpt.write_text(target, "first")
    ckpt.write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_disk_full_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.json"
    ckpt.write_json(target, {"ok": 1})

    def full(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(CheckpointError, match="disk full while saving .*model.json"):
        ckpt.atomic_write(target, full)
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]


def test_state_is_loaded_without_unpickling_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / ckpt.STATE)
    with pytest.raises(CheckpointError, match="cannot read"):
        ckpt.load_state(tmp_path)


def test_missing_weights_are_reported(tmp_path):
    with pytest.raises(CheckpointError, match="no trained weights"):
        ckpt.read_meta(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        ckpt.read_meta(tmp_path / "nope")


def test_new_run_dir_never_overwrites(tmp_path):
    run = ckpt.new_run_dir(str(tmp_path / "r"), "m", "d")
    (run / ckpt.META).write_text("{}")
    with pytest.raises(CheckpointError, match="already holds a run"):
        ckpt.new_run_dir(str(run), "m", "d")
    a = ckpt.new_run_dir(None, "m", "d", root=tmp_path)
    b = ckpt.new_run_dir(None, "m", "d", root=tmp_path)
    assert a != b


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    ckpt.write_text(tmp_path / "a.txt", "x")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask
