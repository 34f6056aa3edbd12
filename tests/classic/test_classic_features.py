from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.feature import hog

from cnnlab.classic.features import FeatureSpec, dense_grid, extract, hog_cell
from cnnlab.errors import ConfigError


def _images(channels: int, n: int = 3, size: int = 28) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, channels, size, size), dtype=np.uint8)


def _skimage_hog(img: np.ndarray, cell: int) -> np.ndarray:
    return hog(img, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
               block_norm="L2-Hys", feature_vector=True)


def test_hog_equals_skimage_grey():
    images = _images(1)
    spec = FeatureSpec("hog")
    cell = hog_cell(spec, 28, 28)
    assert cell == 4  # about 7 cells across MNIST
    for (desc, pos), img in zip(extract(images, spec), images, strict=True):
        ref = _skimage_hog(img[0].astype(np.float64) / 255.0, cell)
        np.testing.assert_array_equal(desc.ravel(), ref.astype(np.float32))
        assert desc.shape == (36, 36) and pos.shape == (36, 2)
        assert (pos >= 0).all() and (pos < 1).all()


def test_hog_equals_skimage_on_rgb_converted_to_grey():
    images = _images(3, size=32)
    spec = FeatureSpec("hog", hog_cell=8)
    for (desc, _), img in zip(extract(images, spec), images, strict=True):
        ref = _skimage_hog(rgb2gray(np.moveaxis(img, 0, -1)), 8)
        np.testing.assert_array_equal(desc.ravel(), ref.astype(np.float32))


def test_dense_sift_grid_count_and_equals_cv2_compute():
    images = _images(1, n=2, size=32)
    spec = FeatureSpec("dsift")  # sizes 8, 12, 16 with step 4 on 32 px: 7² + 6² + 5² centres
    grid = dense_grid(32, 32, spec.dsift_sizes, spec.dsift_step)
    assert len(grid) == 49 + 36 + 25
    sift = cv2.SIFT_create()
    for (desc, pos), img in zip(extract(images, spec), images, strict=True):
        kps = [cv2.KeyPoint(x, y, s, 0) for x, y, s in grid]
        _, ref = sift.compute(img[0], kps)
        assert desc.shape == (110, 128) and pos.shape == (110, 2)
        np.testing.assert_array_equal(desc, ref)
        assert np.abs(desc).sum() > 0


def test_dense_sift_image_smaller_than_patch_is_an_error():
    with pytest.raises(ConfigError, match="smaller than the smallest dense-SIFT patch"):
        dense_grid(6, 6, (8, 12), 4)


def test_sift_caps_keypoints_and_handles_blank_images():
    rng = np.random.default_rng(0)
    busy = rng.integers(0, 256, (1, 1, 32, 32), dtype=np.uint8)
    blank = np.full((1, 1, 32, 32), 128, dtype=np.uint8)
    spec = FeatureSpec("sift", sift_max_keypoints=10)
    (d_busy, p_busy), (d_blank, p_blank) = extract(np.concatenate([busy, blank]), spec)
    assert 0 < len(d_busy) <= 10 and d_busy.shape[1] == 128 and len(p_busy) == len(d_busy)
    assert d_blank.shape == (0, 128) and p_blank.shape == (0, 2)


def test_unknown_feature_suggests():
    with pytest.raises(ConfigError, match="did you mean 'hog'"):
        FeatureSpec("hgo")
