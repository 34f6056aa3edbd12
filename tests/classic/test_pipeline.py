from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from cnnlab.classic import run_classic
from cnnlab.classic.pipeline import stratified_subset


def test_digits_hog_linear_svm(tmp_path):
    out = tmp_path / "hog.json"
    r = run_classic("digits", features="hog", classifier="linear-svm", out=out, progress=False)
    assert r["accuracy"] >= 0.9
    assert r["sizes"]["n_train"] == 1438 and r["sizes"]["n_test"] == 359
    assert r["sizes"]["encoding_dim"] == 324 and r["sizes"]["descriptor_dim"] == 36
    assert r["classifier_params"]["C"] in (0.01, 0.1, 1.0, 10.0)
    assert set(r["timings"]) >= {"features", "codebook", "encode", "fit", "predict", "total"}
    assert np.array(r["confusion"]).sum() == 359 and len(r["per_class"]) == 10
    assert json.loads(out.read_text())["accuracy"] == r["accuracy"]


@pytest.mark.parametrize("encoding", ["bovw", "vlad", "fisher"])
def test_rgb_folder_dsift_encodings(rgb_folder, encoding):
    logs = []
    r = run_classic(str(rgb_folder), features="dsift", encoding=encoding, codebook_size=4,
                    pca=16, pyramid=encoding == "vlad", progress=False, log=logs.append)
    assert any("converted to grey" in m for m in logs) and r["notes"]
    assert r["sizes"]["descriptors_per_image"] == 110 and r["sizes"]["n_test"] == 18
    per_image = {"bovw": 4, "vlad": 4 * 16 * 5, "fisher": 2 * 4 * 16}[encoding]
    assert r["sizes"]["encoding_dim"] == per_image
    assert r["accuracy"] > 0.6  # three classes: chance is 1/3


def test_sift_knn_and_tree_run(rgb_folder):
    r = run_classic(str(rgb_folder), features="sift", encoding="bovw", codebook_size=8,
                    classifier="knn", progress=False)
    assert 0 <= r["accuracy"] <= 1 and r["config"]["encoding"] == "bovw"
    r = run_classic(str(rgb_folder), features="hog", classifier="tree", max_train=24,
                    max_test=9, progress=False)
    assert r["sizes"]["n_train"] == 24 and r["sizes"]["n_test"] == 9


def _h(row: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(row, dtype=np.float64).tobytes()).hexdigest()


def test_linear_svm_cv_never_sees_test_images(rgb_folder, monkeypatch):
    """Every row any LinearSVC is fitted on (CV folds included) is a training row."""
    fitted: set[str] = set()
    predicted: list[np.ndarray] = []
    fit, predict = LinearSVC.fit, LinearSVC.predict

    def spy_fit(self, x, y, *a, **k):
        fitted.update(_h(r) for r in np.asarray(x))
        return fit(self, x, y, *a, **k)

    def spy_predict(self, x):
        predicted.append(np.asarray(x))
        return predict(self, x)

    monkeypatch.setattr(LinearSVC, "fit", spy_fit)
    monkeypatch.setattr(LinearSVC, "predict", spy_predict)
    r = run_classic(str(rgb_folder), features="hog", classifier="linear-svm", progress=False)
    test_rows = {_h(row) for row in predicted[-1]}  # the final predict is on the test split
    assert len(predicted[-1]) == r["sizes"]["n_test"] == 18
    assert r["classifier_params"]["cv_folds"] == 3 and len(predicted) > 1
    assert fitted and not fitted & test_rows


def test_stratified_subset_keeps_class_shares():
    labels = np.repeat(np.arange(4), 50)
    idx = stratified_subset(labels, 40, seed=3)
    assert len(idx) == 40 and np.bincount(labels[idx]).tolist() == [10] * 4
    assert (idx == stratified_subset(labels, 40, seed=3)).all()
    assert len(stratified_subset(labels, None, 0)) == 200
