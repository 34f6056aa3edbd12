"""Image folders and zips → :class:`Dataset` (decoded once, then cached).

Layouts understood (``root`` may be a folder or a ``.zip`` holding the same tree):

* ``root/<class>/*`` — one pool of images; a seeded stratified split holds out ``val_fraction``
  (default 0.2) of every class as the **test** split.
* ``root/train/<class>/*`` plus ``root/test/<class>/*`` and/or ``root/val/<class>/*``
  (``valid``, ``validation`` are synonyms of ``val``; ``training``/``testing`` of train/test):

  - train + test: as they are; ``val_fraction`` then holds out that share of train as a
    validation split (what ``load_data`` does for named sets);
  - train + test + val: all three kept, ``val`` is the validation split;
  - train + val only: **val becomes the test split** — every data set needs a test split and a
    folder of held-out images is better than a random split of train; ``val_fraction`` may then
    still hold out a validation split from train;
  - train only: treated like ``root/<class>/*``.
* a folder holding ``train.zip`` and ``test.zip`` (and/or ``val.zip``), each with a class tree
  inside (``train.zip`` may wrap it as ``train/<class>/*``, as in ``shared/data/cifar10-jpeg``).

A single wrapping folder is looked through (``data.zip`` holding ``data/train/...``). Hidden
files and folders (``.name``) and ``__MACOSX`` are ignored, as are non-image files; images
nested deeper inside a class folder belong to that class. Classes are the sorted folder names and
must be the same in every split.

Channels: 1 when every image is grey, else 3 (grey images are repeated to RGB, RGBA composited on
white, palette converted) unless ``channels`` is given. Sizes must agree unless ``image_size`` is
given. A corrupt or truncated image is an error naming the file, unless ``skip_corrupt`` (then it
is skipped, counted in ``info["skipped_corrupt"]`` and a warning goes to stderr).

Decoding runs in a few worker processes (``fork``, where available) for large sets and shows a
progress bar on stderr when it takes more than a second on a terminal.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import sys
import time
import warnings
import zipfile
import zlib
from collections import Counter
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .cache import cached
from .dataset import Dataset, Split, stratified_split
from .images import IMAGE_EXTENSIONS, as_size, check_channels, decode_array

SPLIT_NAMES = {"train": "train", "training": "train", "test": "test", "testing": "test",
               "val": "val", "valid": "val", "validation": "val"}
PARALLEL_MIN_IMAGES = 1500  # below this, starting worker processes costs more than it saves


def _ignored(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass
class _Container:
    """Where image files live: a plain folder, or a zip file."""

    root: Path
    is_zip: bool

    def display(self, name: str) -> str:
        return f"{self.root}:{name}" if self.is_zip else str(self.root / name)


@dataclass
class _Plan:
    """What was found: per split, per class, the (container index, file name) of each image."""

    layout: str
    containers: list[_Container]
    splits: dict[str, dict[str, list[tuple[int, str]]]]
    fingerprint: list = field(default_factory=list)
    notes: dict = field(default_factory=dict)


# -- listing --------------------------------------------------------------------------------------

def _scan_dir(root: Path) -> tuple[list[str], list, int]:
    """(image paths relative to root, fingerprint rows, number of other files), hidden skipped."""
    images: list[str] = []
    rows: list = []
    others = 0
    stack = [("", root)]
    while stack:
        rel, folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            raise DataError(f"cannot read folder {folder}: {exc}") from exc
        for entry in entries:
            if _ignored(entry.name):
                continue
            name = f"{rel}{entry.name}"
            if entry.is_dir():
                stack.append((f"{name}/", Path(entry.path)))
            elif _is_image(entry.name):
                st = entry.stat()
                images.append(name)
                rows.append([name, st.st_size, st.st_mtime_ns])
            else:
                others += 1
    rows.sort()
    return sorted(images), rows, others


def _scan_zip(path: Path) -> tuple[list[str], int]:
    """(image member names, number of other members) of a zip, hidden and __MACOSX skipped."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable zip file ({exc})") from exc
    images, others = [], 0
    for info in infos:
        if info.is_dir() or any(_ignored(p) for p in info.filename.split("/") if p):
            continue
        if _is_image(info.filename):
            images.append(info.filename)
        else:
            others += 1
    return sorted(images), others


def _stat_row(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


# -- layout detection -----------------------------------------------------------------------------

def _strip_wrappers(names: list[str], strip_split_names: bool) -> str:
    """The prefix of single wrapping folders to look through (``data/`` in ``data/train/...``).

    A lone folder that holds images directly is a (single) class, not a wrapper.
    """
    prefix = ""
    parts = [n.split("/") for n in names]
    while parts:
        if any(len(p) == 1 for p in parts):
            break
        tops = {p[0] for p in parts}
        if len(tops) != 1:
            break
        top = next(iter(tops))
        if top.lower() in SPLIT_NAMES and not strip_split_names:
            break
        rest = [p[1:] for p in parts]
        if not any(len(p) > 1 for p in rest):
            break
        prefix += top + "/"
        parts = rest
    return prefix


def _classes_under(names: list[str], prefix: str, where: str, notes: dict,
                   ref: int) -> dict[str, list[tuple[int, str]]]:
    """class → files, for files ``prefix<class>/...``; loose images are counted in ``notes``."""
    classes: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        rest = name[len(prefix):]
        cls, sep, _ = rest.partition("/")
        if not sep:
            notes.setdefault("loose_images", []).append(f"{where}{name}")
            continue
        classes.setdefault(cls, []).append((ref, name))
    return dict(sorted(classes.items()))


def _plan_tree(names: list[str], ref: int, where: str, notes: dict
               ) -> tuple[str, dict[str, dict[str, list[tuple[int, str]]]]]:
    """Layout of one tree of image names: ('classes', {'all': ...}) or ('splits', {...})."""
    prefix = _strip_wrappers(names, strip_split_names=False)
    tops: dict[str, list[str]] = {}
    for name in names:
        head, sep, _ = name[len(prefix):].partition("/")
        if sep:
            tops.setdefault(head, []).append(name)
    split_dirs: dict[str, list[str]] = {}
    for top in tops:
        if top.lower() in SPLIT_NAMES:
            split_dirs.setdefault(SPLIT_NAMES[top.lower()], []).append(top)
    if "train" not in split_dirs:
        return "classes", {"all": _classes_under(names, prefix, where, notes, ref)}
    for key, dirs in split_dirs.items():
        if len(dirs) > 1:
            raise DataError(f"{where}{prefix} has several {key} folders "
                            f"({', '.join(sorted(dirs))}); keep one")
    splits = {}
    for key, (top,) in split_dirs.items():
        splits[key] = _classes_under(tops[top], f"{prefix}{top}/", where, notes, ref)
    other = sorted(set(tops) - {d for (d,) in split_dirs.values()})
    if other:
        notes["ignored_folders"] = [f"{where}{prefix}{o}" for o in other]
    return "splits", splits


def _plan(path: Path) -> _Plan:
    notes: dict = {}
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path} is a file but not a .zip; give a folder of class folders or "
                            "a .zip of one")
        names, others = _scan_zip(path)
        if not names:
            raise DataError(f"no images in {path}"
                            + (f" ({others} other files)" if others else " (empty zip)"))
        layout, splits = _plan_tree(names, 0, f"{path}:", notes)
        return _Plan(f"zip/{layout}", [_Container(path, True)], splits, [_stat_row(path)], notes)

    if not path.is_dir():
        raise DataError(f"data folder not found: {path}")
    names, rows, others = _scan_dir(path)
    if names:
        layout, splits = _plan_tree(names, 0, f"{path}/", notes)
        return _Plan(f"folder/{layout}", [_Container(path, False)], splits, rows, notes)

    zips = sorted(p for p in path.iterdir() if p.suffix.lower() == ".zip" and p.is_file()
                  and not _ignored(p.name))
    split_zips = {SPLIT_NAMES[z.stem.lower()]: z for z in zips if z.stem.lower() in SPLIT_NAMES}
    if "train" in split_zips:
        containers, splits = [], {}
        for key, zpath in sorted(split_zips.items()):
            znames, _ = _scan_zip(zpath)
            if not znames:
                raise DataError(f"no images in {zpath}")
            prefix = _strip_wrappers(znames, strip_split_names=True)
            splits[key] = _classes_under(znames, prefix, f"{zpath}:", notes, len(containers))
            containers.append(_Container(zpath, True))
        return _Plan("zips/splits", containers, splits,
                     [_stat_row(c.root) for c in containers], notes)
    if len(zips) == 1:
        return _plan(zips[0])
    if zips:
        raise DataError(f"{path} holds no images but several zips "
                        f"({', '.join(z.name for z in zips)}); expected train.zip + test.zip, "
                        "or give one zip's path")
    if others == 0 and not any(not _ignored(p.name) for p in path.iterdir()):
        raise DataError(f"data folder {path} is empty")
    raise DataError(f"no images in {path} ({others} other files; looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)} in class folders)")


def _check_classes(plan: _Plan, path: Path) -> list[str]:
    """The class names, the same in every split, at least 2; errors name the difference."""
    if not any(plan.splits.values()):
        loose = plan.notes.get("loose_images", [])
        raise DataError(f"no class folders in {path}: found {len(loose)} image(s) directly in it "
                        "— put each class's images in a folder named after the class "
                        "(root/<class>/*.jpg, or root/train/<class>/ and root/test/<class>/)")
    keys = list(plan.splits)
    classes = sorted(plan.splits[keys[0]])
    for key in keys[1:]:
        other = sorted(plan.splits[key])
        if other != classes:
            only_a = sorted(set(classes) - set(other))
            only_b = sorted(set(other) - set(classes))
            raise DataError(
                f"class folders differ between {keys[0]} and {key} in {path}: "
                f"only in {keys[0]}: {', '.join(only_a) or '-'}; "
                f"only in {key}: {', '.join(only_b) or '-'}")
    if len(classes) < 2:
        raise DataError(f"{path} has a single class folder '{classes[0]}'; a classifier needs at "
                        "least 2 classes (one folder per class)")
    return classes


# -- decoding -------------------------------------------------------------------------------------

# Zips opened by this process, kept open across chunks: reading the central directory of a
# 50,000-member zip costs ~0.2 s, too much to repeat for every chunk. Worker processes start
# empty (the parent never fills this dict) and close everything when the pool shuts down.
_WORKER_ZIPS: dict[str, zipfile.ZipFile] = {}


def _decode_chunk(task: tuple, zips: dict[str, zipfile.ZipFile] | None = None
                  ) -> tuple[list, list[tuple[int, str]]]:
    """Worker: decode a chunk of files from one container → (arrays or None, errors)."""
    root, is_zip, names, channels, size = task
    arrays: list = []
    errors: list[tuple[int, str]] = []
    zips = _WORKER_ZIPS if zips is None else zips
    zf = None
    if is_zip:
        if root not in zips:
            try:
                zips[root] = zipfile.ZipFile(root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"cannot read {root}: {exc}") from exc
        zf = zips[root]
    for i, name in enumerate(names):
        shown = f"{root}:{name}" if is_zip else os.path.join(root, name)
        try:
            src = io.BytesIO(zf.read(name)) if zf is not None else os.path.join(root, name)
            arrays.append(decode_array(src, shown, channels, size))
        except DataError as exc:
            arrays.append(None)
            errors.append((i, str(exc)))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
            arrays.append(None)
            errors.append((i, f"corrupt or truncated image: {shown} ({exc}); remove it or "
                              "pass --skip-corrupt"))
    return arrays, errors


def _workers(requested: int | None, n: int) -> int:
    if requested is not None:
        return max(1, requested)
    if n < PARALLEL_MIN_IMAGES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _decode_all(plan: _Plan, items: list[tuple[int, str]], channels: int | None,
                size: tuple[int, int] | None, skip_corrupt: bool, workers: int | None,
                progress: bool | None, label: str) -> tuple[list, list[str]]:
    """Decode every item (in order) → (arrays with None for skipped files, skipped messages)."""
    n = len(items)
    nproc = _workers(workers, n)
    per_chunk = max(64, min(4000, -(-n // (nproc * 8))))
    tasks: list[tuple[list[int], tuple]] = []  # (positions, task)
    by_container: dict[int, list[int]] = {}
    for pos, (ref, _) in enumerate(items):
        by_container.setdefault(ref, []).append(pos)
    for ref, positions in by_container.items():
        c = plan.containers[ref]
        for i in range(0, len(positions), per_chunk):
            chunk = positions[i:i + per_chunk]
            tasks.append((chunk, (str(c.root), c.is_zip, [items[p][1] for p in chunk],
                                  channels, size)))

    from tqdm import tqdm

    bar = tqdm(total=n, desc=f"decoding {label}", unit="img", file=sys.stderr, leave=False,
               delay=1.0, disable=(None if progress is None else not progress) if n >= 500
               else True)
    out: list = [None] * n
    skipped: list[str] = []

    def take(positions: list[int], result: tuple[list, list[tuple[int, str]]]) -> None:
        arrays, errors = result
        if errors and not skip_corrupt:
            raise DataError(errors[0][1])
        for p, arr in zip(positions, arrays, strict=True):
            out[p] = arr
        skipped.extend(msg for _, msg in errors)
        bar.update(len(positions))

    try:
        if nproc > 1:
            try:
                _run_pool(tasks, nproc, take)
                return out, skipped
            except (BrokenProcessPool, OSError) as exc:  # a killed worker, no /dev/shm, ...
                print(f"warning: parallel decoding failed ({exc}); decoding in this process",
                      file=sys.stderr)
                out[:], skipped[:] = [None] * n, []
                bar.reset()
        zips: dict[str, zipfile.ZipFile] = {}
        try:
            for positions, task in tasks:
                take(positions, _decode_chunk(task, zips))
        finally:
            for zf in zips.values():
                zf.close()
    finally:
        bar.close()
    return out, skipped


def _run_pool(tasks: list, nproc: int, take) -> None:
    methods = multiprocessing.get_all_start_methods()
    # fork: workers start in milliseconds with everything imported; the children only run
    # zipfile/Pillow/numpy, so the parent's threads (torch, tqdm) cannot deadlock them.
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: "fork() with threads"
        pool = ProcessPoolExecutor(max_workers=nproc, mp_context=ctx)
        try:
            futures: list[tuple[list[int], Future]] = [
                (positions, pool.submit(_decode_chunk, task)) for positions, task in tasks]
            for positions, fut in futures:
                take(positions, fut.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


def _stack(arrays: list, names: list[str], channels: int | None,
           path: Path) -> tuple[np.ndarray, int]:
    """Same channels and size for all → uint8 (N, C, H, W)."""
    if channels is None:
        channels = 1 if all(a.shape[2] == 1 for a in arrays) else 3
        if channels == 3:
            arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    sizes = Counter((a.shape[0], a.shape[1]) for a in arrays)
    if len(sizes) > 1:
        example = {}
        for a, name in zip(arrays, names, strict=True):
            example.setdefault((a.shape[0], a.shape[1]), name)
        found = ", ".join(f"{h}×{w} ({k:,} images, e.g. {example[(h, w)]})"
                          for (h, w), k in sizes.most_common(4))
        more = f" and {len(sizes) - 4} more sizes" if len(sizes) > 4 else ""
        raise DataError(f"images in {path} have different sizes: {found}{more} — pass "
                        "--image-size N (image_size=N) to resize them all to N×N")
    stacked = np.stack(arrays)  # (N, H, W, C)
    return np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)), channels


# -- the loader -----------------------------------------------------------------------------------

def load_folder(
    path: str | Path,
    *,
    val_fraction: float | None = None,
    data_dir: str | Path | None = None,
    seed: int = 0,
    skip_corrupt: bool = False,
    cache: bool = True,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    **_: object,
) -> Dataset:
    """A folder or .zip of class folders as a :class:`Dataset` (layouts: see the module doc).

    ``val_fraction``: the test share for a single pool of images (default 0.2), else the share
    of train held out as validation (when there is no val folder). ``data_dir``: where the cache
    lives (``data_dir/.cache``). ``workers``: decoding processes (default: the CPUs, up to 8, for
    ≥ 1,500 images). ``progress``: None shows a bar on a terminal when decoding takes > 1 s.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data folder not found: {path}")
    size = as_size(image_size)
    check_channels(channels)
    plan = _plan(path)
    classes = _check_classes(plan, path)
    index = {c: i for i, c in enumerate(classes)}
    label = path.name

    def build():
        start = time.perf_counter()
        items, labels, split_of = [], [], []
        for key, per_class in plan.splits.items():
            for cls, files in per_class.items():
                items.extend(files)
                labels.extend([index[cls]] * len(files))
                split_of.extend([key] * len(files))
        arrays, skipped = _decode_all(plan, items, channels, size, skip_corrupt, workers,
                                      progress, label)
        keep = [i for i, a in enumerate(arrays) if a is not None]
        if not keep:
            raise DataError(f"every image in {path} is corrupt ({len(skipped)} skipped)")
        names = [plan.containers[items[i][0]].display(items[i][1]) for i in keep]
        stacked, chans = _stack([arrays[i] for i in keep], names, channels, path)
        images = torch.from_numpy(stacked)
        all_labels = torch.tensor([labels[i] for i in keep], dtype=torch.int64)
        where = np.array([split_of[i] for i in keep])
        splits = {}
        for key in plan.splits:
            sel = torch.from_numpy(np.nonzero(where == key)[0])
            splits[key] = Split(images[sel], all_labels[sel])
        meta = {"classes": classes, "layout": plan.layout, "channels": chans,
                "skipped_corrupt": len(skipped), "skipped_files": skipped[:20],
                "decode_seconds": round(time.perf_counter() - start, 3)}
        return splits, meta

    identity = {"kind": "folder", "path": str(path.resolve()), "image_size": size,
                "channels": channels}
    native = {**identity, "image_size": None, "channels": None}
    splits, meta = cached(build, slug=label, identity=identity, content=plan.fingerprint,
                          data_dir=data_dir, enabled=cache,
                          accept=lambda m: skip_corrupt or not m.get("skipped_corrupt"),
                          reuse=(native, lambda s, m: _derive(s, size, channels)))
    if meta.get("classes") != classes:  # cannot happen with an honest cache; never trust blindly
        raise DataError(f"data cache for {path} is inconsistent; delete {meta.get('cache')}")
    return _assemble(path, plan, splits, meta, classes, val_fraction, seed)


def _derive(splits: dict[str, Split], size: tuple[int, int] | None,
            channels: int | None) -> dict[str, Split] | None:
    """The native-size entry as the result asked for, when that is exact: same size, and the
    same channels or grey → RGB (a repeat, as Pillow's convert does). Else None."""
    out = {}
    for key, split in splits.items():
        c, h, w = split.images.shape[1:]
        if size is not None and (h, w) != tuple(size):
            return None
        images = split.images
        if channels is not None and channels != c:
            if not (c == 1 and channels == 3):
                return None
            images = images.expand(-1, 3, -1, -1).contiguous()
        out[key] = Split(images, split.labels)
    return out


def _assemble(path: Path, plan: _Plan, splits: dict[str, Split], meta: dict, classes: list[str],
              val_fraction: float | None, seed: int) -> Dataset:
    info = {"layout": plan.layout, "skipped_corrupt": int(meta.get("skipped_corrupt", 0)),
            "cache": meta.get("cache")}
    if meta.get("decode_seconds") is not None and not str(info["cache"]).startswith("hit"):
        info["decode_seconds"] = meta["decode_seconds"]
    if info["skipped_corrupt"]:
        shown = meta.get("skipped_files", [])[:3]
        print(f"warning: skipped {info['skipped_corrupt']} corrupt image(s) in {path}: "
              + "; ".join(shown) + (" …" if info["skipped_corrupt"] > len(shown) else ""),
              file=sys.stderr)
        info["skipped_files"] = meta.get("skipped_files", [])
    loose = plan.notes.get("loose_images", [])
    if loose:
        print(f"warning: ignoring {len(loose)} image(s) outside class folders in {path} "
              f"(e.g. {loose[0]})", file=sys.stderr)
        info["ignored_images"] = len(loose)
    if plan.notes.get("ignored_folders"):
        info["ignored_folders"] = plan.notes["ignored_folders"]

    val = None
    if "train" in splits and "test" not in splits and "val" not in splits:
        splits = {"all": splits["train"]}
    if "all" in splits:
        fraction = val_fraction or 0.2
        keep, held = stratified_split(splits["all"].labels, fraction, seed)
        train, test = splits["all"].subset(keep), splits["all"].subset(held)
        info["test_split"] = f"stratified {fraction:.0%} of each class held out, seed {seed}"
    else:
        train = splits["train"]
        if "test" in splits:
            test, val = splits["test"], splits.get("val")
        else:
            test = splits["val"]
            info["test_split"] = "the val folder (there is no test folder)"
        if val is None and val_fraction:
            keep, held = stratified_split(train.labels, val_fraction, seed)
            train, val = train.subset(keep), train.subset(held)
            info["val_split"] = f"stratified {val_fraction:.0%} of train held out, seed {seed}"
    name = path.stem if path.is_file() else path.name
    return Dataset(name=name, classes=list(classes), train=train, test=test, val=val,
                   source=str(path), info=info)
