"""Image folders and zips: every layout, channel/size handling, and each error path."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_data, load_folder
from cnnlab.errors import DataError

# -- layouts --------------------------------------------------------------------------------------


def test_class_folders_get_a_seeded_stratified_test_split(tmp_path, fake):
    root = fake.tree(tmp_path / "pets", {"cat": 10, "dog": 10, "eel": 5})
    ds = load_folder(root, cache=False)
    assert ds.classes == ["cat", "dog", "eel"] and ds.name == "pets"
    assert ds.test.counts(3) == [2, 2, 1] and ds.train.counts(3) == [8, 8, 4]
    assert ds.image_shape == (3, 8, 8) and ds.info["layout"] == "folder/classes"
    again = load_folder(root, cache=False)
    assert torch.equal(again.test.images, ds.test.images)  # same seed → same split
    other = load_folder(root, cache=False, seed=1, val_fraction=0.5)
    assert other.test.counts(3) == [5, 5, 2] and "50%" in other.info["test_split"]


def test_labels_follow_sorted_folder_names_and_pixels_are_exact(tmp_path, fake):
    root = tmp_path / "d"
    pixels = {}
    for cls in ("b_second", "a_first"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            arr = fake.rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
            pixels[(cls, i)] = arr
    ds = load_folder(root / "", cache=False, val_fraction=0.5)
    assert ds.classes == ["a_first", "b_second"]
    found = torch.cat([ds.train.images, ds.test.images])
    labels = torch.cat([ds.train.labels, ds.test.labels])
    for (cls, _), arr in pixels.items():
        img = torch.from_numpy(arr).permute(2, 0, 1)
        match = [j for j in range(len(found)) if torch.equal(found[j], img)]
        assert len(match) == 1 and labels[match[0]] == ds.classes.index(cls)


def test_train_test_folders_kept_and_val_fraction_holds_out_val(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"train/a": 6, "train/b": 6, "test/a": 2, "test/b": 3})
    ds = load_folder(root, cache=False)
    assert len(ds.train) == 12 and ds.test.counts(2) == [2, 3] and ds.val is None
    ds = load_folder(root, cache=False, val_fraction=0.5)
    assert ds.val.counts(2) == [3, 3] and len(ds.train) == 6 and len(ds.test) == 5


def test_train_val_test_all_kept(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"train/a": 4, "train/b": 4, "validation/a": 1,
                                      "validation/b": 1, "test/a": 2, "test/b": 2})
    ds = load_folder(root, cache=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (8, 2, 4)
    assert ds.split("valid") is ds.val


def test_train_and_val_only_val_becomes_test(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"train/a": 4, "train/b": 4, "val/a": 1, "val/b": 2})
    ds = load_folder(root, cache=False)
    assert ds.test.counts(2) == [1, 2] and ds.val is None
    assert "val folder" in ds.info["test_split"]


def test_train_zip_and_test_zip_like_shared_cifar10_jpeg(tmp_path, fake):
    root = tmp_path / "cifar-like"
    root.mkdir()
    fake.zip_tree(root / "train.zip", {"train/cat": 3, "train/dog": 4},
                  extra={"__MACOSX/train/cat/._000.png": b"junk", "train/.DS_Store": b"x"})
    fake.zip_tree(root / "test.zip", {"test/cat": 1, "test/dog": 2})
    (root / "README.txt").write_text("not an image")
    ds = load_data(str(root), cache=False)
    assert ds.classes == ["cat", "dog"] and ds.info["layout"] == "zips/splits"
    assert ds.train.counts(2) == [3, 4] and ds.test.counts(2) == [1, 2]


@pytest.mark.parametrize("inner", [
    {"cat": 3, "dog": 3},                                      # classes at the top
    {"mydata/cat": 3, "mydata/dog": 3},                        # one wrapping folder
    {"mydata/train/cat": 2, "mydata/train/dog": 2, "mydata/test/cat": 1, "mydata/test/dog": 1},
])
def test_single_zip_any_layout(tmp_path, fake, inner):
    path = fake.zip_tree(tmp_path / "set.zip", inner)
    ds = load_folder(path, cache=False)
    assert ds.classes == ["cat", "dog"] and ds.name == "set"
    assert len(ds.train) + len(ds.test) == 6


def test_hidden_files_and_folders_ignored(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 3, ".hidden_class": 3, "__MACOSX/a": 2})
    (root / "a" / ".thumb.png").write_bytes(b"not even an image")
    (root / "a" / "notes.txt").write_text("ignored")
    ds = load_folder(root, cache=False)
    assert ds.classes == ["a", "b"] and len(ds.train) + len(ds.test) == 6


def test_nested_images_belong_to_their_class(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a/x": 2, "a/y": 1, "b": 3})
    ds = load_folder(root, cache=False, val_fraction=0.34)
    assert (ds.train.counts(2)[0] + ds.test.counts(2)[0]) == 3


# -- channels and sizes ---------------------------------------------------------------------------


def test_all_grey_gives_one_channel_mixed_gives_three(tmp_path, fake):
    grey = fake.tree(tmp_path / "g", {"a": 2, "b": 2}, mode="L")
    assert load_folder(grey, cache=False).image_shape == (1, 8, 8)
    mixed = fake.tree(tmp_path / "m", {"a": 2, "b": 2}, mode="L")
    fake.tree(mixed, {"b": 1}, mode="RGBA")
    fake.tree(mixed, {"a": 1}, mode="P")  # a: palette + grey, b: RGBA + grey
    ds = load_folder(mixed, cache=False, val_fraction=0.5)
    assert ds.image_shape == (3, 8, 8)


def test_grey_image_repeated_into_rgb_exactly(tmp_path):
    root = tmp_path / "d"
    for cls, mode in (("a", "L"), ("b", "RGB")):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new(mode, (3, 3), 200 if mode == "L" else (10, 20, 30)).save(
                root / cls / f"{i}.png")
    ds = load_folder(root, cache=False, val_fraction=0.5)
    images = torch.cat([ds.train.images, ds.test.images])
    labels = torch.cat([ds.train.labels, ds.test.labels])
    assert (images[labels == 0] == 200).all()
    assert images[labels == 1][:, :, 0, 0].tolist() == [[10, 20, 30]] * 2


def test_rgba_composited_on_white(tmp_path):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGBA", (2, 2), (0, 0, 0, 0)).save(root / cls / f"{i}.png")
    ds = load_folder(root, cache=False, val_fraction=0.5)
    assert (ds.train.images == 255).all()  # fully transparent → white, not black


def test_channels_option_forces_grey_or_rgb(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 2, "b": 2})
    assert load_folder(root, cache=False, channels=1).image_shape == (1, 8, 8)
    grey = fake.tree(tmp_path / "g", {"a": 2, "b": 2}, mode="L")
    assert load_folder(grey, cache=False, channels=3).image_shape == (3, 8, 8)
    with pytest.raises(DataError, match="channels must be 1"):
        load_folder(root, cache=False, channels=2)


def test_different_sizes_are_an_error_unless_image_size(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 3, "b": 2}, size=(8, 8))
    fake.tree(root, {"b": 3}, size=(6, 10))  # overwrites 000,001 and adds 002 in b
    with pytest.raises(DataError) as err:
        load_folder(root, cache=False)
    msg = str(err.value)
    assert "8×8 (3 images" in msg and "6×10 (3 images" in msg and "--image-size" in msg
    ds = load_folder(root, cache=False, image_size=5)
    assert ds.image_shape == (3, 5, 5)


# -- errors ---------------------------------------------------------------------------------------


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="data folder not found"):
        load_data(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="is empty"):
        load_folder(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no images in"):
        load_folder(tmp_path / "text")


def test_images_without_class_folders(tmp_path, fake):
    root = fake.tree(tmp_path / "flat", {".": 4})
    with pytest.raises(DataError, match="no class folders in .*found 4 image"):
        load_folder(root)


def test_single_class_needs_at_least_two(tmp_path, fake):
    root = fake.tree(tmp_path / "one", {"cat": 4})
    with pytest.raises(DataError, match="single class folder 'cat'.*at least 2 classes"):
        load_folder(root)


def test_class_lists_must_match_between_splits(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"train/a": 2, "train/b": 2, "train/c": 2,
                                      "test/a": 1, "test/b": 1, "test/d": 1})
    with pytest.raises(DataError) as err:
        load_folder(root)
    assert "only in train: c" in str(err.value) and "only in test: d" in str(err.value)


def test_not_a_zip(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a .zip"):
        load_folder(path)


def _corrupt_tree(fake, root):
    fake.tree(root, {"a": 3, "b": 3})
    good = (root / "a" / "000.png").read_bytes()
    (root / "a" / "001.png").write_bytes(good[: len(good) // 2])  # truncated
    (root / "b" / "002.png").write_bytes(b"this is not a png")
    return root


def test_corrupt_image_is_an_error_naming_the_file(tmp_path, fake):
    root = _corrupt_tree(fake, tmp_path / "d")
    with pytest.raises(DataError) as err:
        load_folder(root, cache=False)
    msg = str(err.value)
    assert "corrupt or truncated image" in msg and "--skip-corrupt" in msg
    assert str(root / "a" / "001.png") in msg or str(root / "b" / "002.png") in msg


def test_skip_corrupt_counts_and_warns(tmp_path, fake, capsys):
    root = _corrupt_tree(fake, tmp_path / "d")
    ds = load_folder(root, cache=False, skip_corrupt=True, val_fraction=0.5)
    assert ds.info["skipped_corrupt"] == 2
    assert len(ds.train) + len(ds.test) == 4
    err = capsys.readouterr().err
    assert "warning: skipped 2 corrupt image(s)" in err and "001.png" in err


def test_corrupt_member_inside_zip_is_named(tmp_path, fake):
    good = fake.image_bytes()
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("a", "b"):
            for i in range(2):
                zf.writestr(f"{cls}/{i}.png", good)
        zf.writestr("b/bad.png", good[:30])
    with pytest.raises(DataError, match=r"z\.zip:b/bad\.png"):
        load_folder(path, cache=False)
    ds = load_folder(path, cache=False, skip_corrupt=True, val_fraction=0.5)
    assert ds.info["skipped_corrupt"] == 1


# -- decoding in worker processes -----------------------------------------------------------------


def test_parallel_decode_equals_serial(tmp_path, fake):
    path = fake.zip_tree(tmp_path / "z.zip", {"a": 40, "b": 40}, size=(6, 6))
    serial = load_folder(path, cache=False, workers=1)
    parallel = load_folder(path, cache=False, workers=2)
    assert torch.equal(serial.train.images, parallel.train.images)
    assert torch.equal(serial.test.labels, parallel.test.labels)


def test_parallel_decode_reports_corrupt_file(tmp_path, fake):
    root = _corrupt_tree(fake, tmp_path / "d")
    with pytest.raises(DataError, match="corrupt or truncated image"):
        load_folder(root, cache=False, workers=2)


def test_jpeg_decoding_matches_pillow(tmp_path, fake):
    root = fake.tree(tmp_path / "d", {"a": 2, "b": 2}, fmt="JPEG", size=(16, 16))
    ds = load_folder(root, cache=False, val_fraction=0.5)
    ref = np.asarray(Image.open(io.BytesIO((root / "a" / "000.jpg").read_bytes())).convert("RGB"))
    images = torch.cat([ds.train.images, ds.test.images]).permute(0, 2, 3, 1).numpy()
    assert any(np.array_equal(img, ref) for img in images)


def test_broken_worker_pool_falls_back_to_serial(tmp_path, fake, monkeypatch, capsys):
    from concurrent.futures.process import BrokenProcessPool

    from cnnlab.data import folder

    def broken(tasks, nproc, take):
        take(tasks[0][0], folder._decode_chunk(tasks[0][1], {}))  # partial progress, then death
        raise BrokenProcessPool("a worker died")

    path = fake.zip_tree(tmp_path / "z.zip", {"a": 20, "b": 20}, size=(6, 6))
    serial = load_folder(path, cache=False, workers=1)
    monkeypatch.setattr(folder, "_run_pool", broken)
    ds = load_folder(path, cache=False, workers=2)
    assert torch.equal(ds.train.images, serial.train.images)
    assert "parallel decoding failed" in capsys.readouterr().err
