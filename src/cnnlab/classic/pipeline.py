"""``cnnlab classic``: local features → codebook encoding → (spatial pyramid) → classifier.

The pipeline of image classification before CNNs (Csurka 2004; Lazebnik 2006; Jégou 2010;
Perronnin 2010), on the same train/test splits ``cnnlab train`` uses (``cnnlab.load_data``),
so its accuracy sits next to a CNN's in ``cnnlab compare``.

Order of work, chosen so memory stays small however many images: (1) descriptors of a seeded
sample of training images fit the codebook; (2) each split is then processed in chunks —
extract, encode, keep only the fixed-length encodings. Nothing of the test split is seen
before the classifier is fitted; the linear SVM's C is chosen by stratified cross-validation on
the training split alone.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, unknown
from .encoding import (
    DEFAULT_CODEBOOK,
    ENCODINGS,
    FISHER_PCA,
    check_encoding,
    encode,
    fit_codebook,
)
from .features import FEATURES, FeatureSpec, extract

CLASSIFIERS = ("linear-svm", "rbf-svm", "knn", "tree")
C_GRID = (0.01, 0.1, 1.0, 10.0)
CV_MAX_IMAGES = 5000  # C is chosen on at most this many training images (all are fitted after)
CHUNK = 256


def check_options(features: str, encoding: str, classifier: str, pyramid: bool) -> None:
    """Every name and combination, before any data is read."""
    if features not in FEATURES:
        raise ConfigError(unknown("feature", features, FEATURES))
    check_encoding(encoding)
    if classifier not in CLASSIFIERS:
        raise ConfigError(unknown("classifier", classifier, CLASSIFIERS))
    if encoding == "none" and features == "sift":
        raise ConfigError("SIFT at detected keypoints gives a different number of descriptors "
                          "per image; it needs --encoding bovw, vlad or fisher")
    if encoding == "none" and pyramid:
        raise ConfigError("--pyramid pools an encoding per image region; use it with "
                          "--encoding bovw, vlad or fisher")


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded, class-stratified sample of ``n`` (all when ``n`` is None or ≥ N)."""
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise ConfigError(f"--max-train/--max-test must be ≥ 1, got {n}")
    from sklearn.model_selection import train_test_split

    try:
        idx, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels,
                                  random_state=seed)
    except ValueError:  # a class too small to stratify, or n below the number of classes
        idx = np.random.default_rng(seed).choice(len(labels), n, replace=False)
    return np.sort(idx)


def fit_classifier(x: np.ndarray, y: np.ndarray, classifier: str, *, seed: int = 0) -> tuple:
    """A fitted scikit-learn classifier and its chosen hyper-parameters.

    linear-svm: LinearSVC, C from ``C_GRID`` by stratified 3-fold CV on (at most
    ``CV_MAX_IMAGES`` of) these training images, then fitted on all of them.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    if classifier == "rbf-svm":
        return SVC(C=10.0, gamma="scale").fit(x, y), {"C": 10.0, "gamma": "scale"}
    if classifier == "knn":
        return KNeighborsClassifier(n_neighbors=5, n_jobs=1).fit(x, y), {"n_neighbors": 5}
    if classifier == "tree":
        return DecisionTreeClassifier(random_state=seed).fit(x, y), {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        folds = int(min(3, np.bincount(y).min()))
        c = 1.0
        if folds >= 2:
            sub = stratified_subset(y, CV_MAX_IMAGES, seed)
            search = GridSearchCV(LinearSVC(max_iter=5000, random_state=seed),
                                  {"C": list(C_GRID)}, n_jobs=1,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
            search.fit(x[sub], y[sub])
            c = float(search.best_params_["C"])
        est = LinearSVC(C=c, max_iter=5000, random_state=seed).fit(x, y)
    return est, {"C": c, "cv_folds": folds if folds >= 2 else 0,
                 "cv_images": int(min(len(y), CV_MAX_IMAGES)) if folds >= 2 else 0}


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[key] = self.seconds.get(key, 0.0) + now - since
        return now


def _encode_split(images: np.ndarray, spec: FeatureSpec, codebook, pyramid: bool,
                  timer: _Timer, desc: str, progress: bool) -> tuple[np.ndarray, int]:
    """Fixed-length vectors of every image (chunked), and the total number of descriptors."""
    from ..train.progress import Progress

    rows, count = [], 0
    bar = Progress((len(images) + CHUNK - 1) // CHUNK, desc, enabled=progress)
    for start in range(0, len(images), CHUNK):
        t = time.perf_counter()
        pairs = list(extract(images[start:start + CHUNK], spec))
        t = timer.add("features", t)
        count += sum(len(d) for d, _ in pairs)
        if codebook is None:  # 'none': the descriptors of a fixed grid, concatenated
            rows += [d.ravel() for d, _ in pairs]
        else:
            rows += [encode(d, p, codebook, pyramid=pyramid).astype(np.float32)
                     for d, p in pairs]
            timer.add("encode", t)
        bar.update()
    bar.close()
    return np.stack(rows).astype(np.float32), count


def run_classic(data: str = "digits", *, features: str = "hog", encoding: str | None = None,
                classifier: str = "linear-svm", pyramid: bool = False,
                codebook_size: int | None = None, pca: int | None = None,
                max_train: int | None = None, max_test: int | None = None, seed: int = 0,
                data_dir: str | None = None, image_size: int | None = None,
                codebook_images: int = 2000, codebook_descriptors: int = 100_000,
                out: str | Path | None = None, progress: bool = True,
                log: Callable[[str], None] | None = None, **feature_options) -> dict:
    """Run the classical pipeline on ``data``; a JSON-able dict (written to ``out`` if given).

    ``encoding`` None picks 'none' for HOG (the whole HOG vector) and 'bovw' for SIFT. ``pca``
    None reduces descriptors to 64 dims before a Fisher GMM and leaves them as they are for the
    other encodings. ``feature_options`` are :class:`FeatureSpec` fields (hog_cell,
    dsift_sizes, dsift_step, sift_max_keypoints, ...).
    """
    from .. import load_data
    from ..perf.hardware import cpu_kind, machine_info

    log = log or (lambda _msg: None)
    encoding = encoding or ("none" if features == "hog" else "bovw")
    check_options(features, encoding, classifier, pyramid)
    spec = FeatureSpec(features, **feature_options)
    if encoding != "none":
        codebook_size = codebook_size or DEFAULT_CODEBOOK[encoding]
        if pca is None and encoding == "fisher":
            pca = FISHER_PCA
        if codebook_size > codebook_descriptors:
            raise ConfigError(f"a codebook of {codebook_size} centres needs at least "
                              f"{codebook_size} descriptors, but at most {codebook_descriptors}"
                              " are sampled; lower --codebook-size")
    elif codebook_size is not None:
        raise ConfigError("--codebook-size needs --encoding bovw, vlad or fisher")
    t_start = time.perf_counter()
    timer = _Timer()
    ds = load_data(data, data_dir=data_dir, seed=seed, image_size=image_size)
    notes = []
    channels, height, width = ds.image_shape
    if channels > 1:
        notes.append(f"{channels}-channel images converted to grey (ITU-R 709 luma) for "
                     f"{features}")
    if image_size:
        notes.append(f"images resized to {height}×{width} (--image-size)")
    for note in notes:
        log(note)
    y_all = ds.train.labels.numpy()
    tr = stratified_subset(y_all, max_train, seed)
    te = stratified_subset(ds.test.labels.numpy(), max_test, seed)
    train_images, y_train = ds.train.images.numpy()[tr], y_all[tr]
    test_images, y_test = ds.test.images.numpy()[te], ds.test.labels.numpy()[te]
    log(f"classic {features} + {encoding}{' + pyramid' if pyramid else ''} + {classifier} on "
        f"{ds.name}: {len(tr)} train / {len(te)} test images {channels}×{height}×{width}, "
        f"{ds.num_classes} classes")

    codebook, sample_n = None, 0
    if encoding != "none":
        rng = np.random.default_rng(seed)
        pick = np.sort(rng.choice(len(tr), min(len(tr), codebook_images), replace=False))
        t = time.perf_counter()
        sample = [d for d, _ in extract(train_images[pick], spec)]
        t = timer.add("features", t)
        sample = np.concatenate(sample) if sample else np.zeros((0, 1), np.float32)
        if len(sample) > codebook_descriptors:
            sample = sample[np.sort(rng.choice(len(sample), codebook_descriptors,
                                               replace=False))]
        sample_n = int(len(sample))
        log(f"fitting a {encoding} codebook of {codebook_size} on {sample_n} descriptors from "
            f"{len(pick)} training images")
        codebook = fit_codebook(sample, encoding, codebook_size, seed=seed, pca=pca)
        timer.add("codebook", t)

    x_train, n_desc_train = _encode_split(train_images, spec, codebook, pyramid, timer,
                                          "train", progress)
    x_test, _ = _encode_split(test_images, spec, codebook, pyramid, timer, "test", progress)
    if encoding == "bovw":  # Hellinger map: a linear classifier on √h acts like a χ²-ish kernel
        x_train, x_test = np.sqrt(x_train), np.sqrt(x_test)
    log(f"encodings: {x_train.shape[1]} dims; fitting {classifier}")
    t = time.perf_counter()
    est, params = fit_classifier(x_train, y_train, classifier, seed=seed)
    t = timer.add("fit", t)
    pred = est.predict(x_test)
    timer.add("predict", t)

    k = ds.num_classes
    confusion = np.bincount(y_test * k + pred, minlength=k * k).reshape(k, k)
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum()
                        else None) for i, name in enumerate(ds.classes)}
    timings = {key: round(timer.seconds.get(key, 0.0), 3)
               for key in ("features", "codebook", "encode", "fit", "predict")}
    timings["total"] = round(time.perf_counter() - t_start, 3)
    desc_dim = (int(x_train.shape[1] / max(1, n_desc_train / len(tr))) if encoding == "none"
                else int(codebook.pca_components.shape[1] if codebook.pca_components is not None
                         else codebook.centers.shape[1]))
    result = {
        "kind": "classic",
        "name": "+".join([features, encoding] + (["pyramid"] if pyramid else []) + [classifier]),
        "data": ds.name, "data_source": ds.source, "classes": ds.classes,
        "accuracy": float((pred == y_test).mean()),
        "per_class": per_class, "confusion": confusion.tolist(),
        "config": {"features": features, "encoding": encoding, "classifier": classifier,
                   "pyramid": pyramid, "codebook_size": codebook_size if codebook else None,
                   "pca": pca if codebook else None, "max_train": max_train,
                   "max_test": max_test, "seed": seed, "image_size": image_size,
                   "hog_cell": spec.hog_cell, "dsift_sizes": list(spec.dsift_sizes),
                   "dsift_step": spec.dsift_step, "sift_max_keypoints": spec.sift_max_keypoints},
        "classifier_params": params,
        "timings": timings,
        "sizes": {"descriptor_dim": desc_dim,
                  "descriptors_per_image": round(n_desc_train / max(1, len(tr)), 2),
                  "codebook_size": codebook.size if codebook else None,
                  "codebook_sample": sample_n or None,
                  "encoding_dim": int(x_train.shape[1]),
                  "n_train": int(len(tr)), "n_test": int(len(te))},
        "notes": notes,
        "cpu_kind": cpu_kind(), "machine": machine_info(),
    }
    if out:
        from ..train.checkpoint import write_json

        write_json(Path(out).expanduser(), result)
        log(f"result written to {out}")
    return result


__all__ = ["CLASSIFIERS", "ENCODINGS", "FEATURES", "check_options", "fit_classifier",
           "run_classic", "stratified_subset"]
