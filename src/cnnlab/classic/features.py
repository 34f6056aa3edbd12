"""Local image descriptors of the pre-deep-learning pipeline: HOG, dense SIFT, SIFT at keypoints.

- HOG: Dalal & Triggs, "Histograms of Oriented Gradients for Human Detection", CVPR 2005
  (scikit-image's ``skimage.feature.hog``; one descriptor per block, or the whole vector).
- SIFT: Lowe, "Distinctive Image Features from Scale-Invariant Keypoints", IJCV 2004
  (OpenCV's ``cv2.SIFT``). Dense SIFT computes the same descriptor on a regular grid of
  keypoints at several patch sizes instead of at detected ones — the usual input of BoVW, VLAD
  and Fisher-vector pipelines (Csurka 2004, Jégou 2010, Perronnin 2010).

Every extractor takes uint8 images (N, C, H, W) as a cnnlab ``Split`` holds them and returns, per
image, a float32 array of descriptors (n_i, D) and their centres (n_i, 2) as (y, x) fractions of
the image in [0, 1) — the positions the spatial pyramid pools by. RGB images become grey first
(ITU-R 709 luma, ``skimage.color.rgb2gray``): all three descriptors are defined on intensity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import CnnlabError, ConfigError, unknown

FEATURES = ("hog", "dsift", "sift")
INSTALL_HINT = 'pip install "cnnlab[classic]"'
DSIFT_SIZES = (8, 12, 16)  # patch (keypoint) sizes in pixels, several scales as in Bosch 2007
DSIFT_STEP = 4
SIFT_MIN_SIDE = 64  # SIFT finds almost no extrema on 28–32 px images: upscale them first
SIFT_MAX_KEYPOINTS = 100


def need(module: str):
    """Import an optional dependency of the 'classic' extra, or one line saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = {"cv2": "OpenCV", "skimage": "scikit-image"}.get(module.split(".")[0], module)
        raise CnnlabError(f"this feature needs {what}, from the optional extra 'classic': "
                          f"{INSTALL_HINT}") from exc


@dataclass
class FeatureSpec:
    """What to extract; fields equal the ``run_classic`` keyword names."""

    name: str = "hog"
    hog_cell: int | None = None  # pixels per HOG cell; None → about 7 cells across the image
    hog_orientations: int = 9
    dsift_sizes: Sequence[int] = DSIFT_SIZES
    dsift_step: int = DSIFT_STEP
    sift_max_keypoints: int = SIFT_MAX_KEYPOINTS

    def __post_init__(self) -> None:
        if self.name not in FEATURES:
            raise ConfigError(unknown("feature", self.name, FEATURES))


def grey(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) → float64 (N, H, W) in [0, 1]; RGB through rgb2gray, RGBA drops alpha."""
    images = np.asarray(images)
    if images.shape[1] == 1:
        return images[:, 0].astype(np.float64) / 255.0
    color = need("skimage.color")
    return color.rgb2gray(np.moveaxis(images[:, :3], 1, -1))


def hog_cell(spec: FeatureSpec, height: int, width: int) -> int:
    """Pixels per cell: the given one, else about 7 cells across (4 px on MNIST, 2 on digits)."""
    return spec.hog_cell or max(2, round(min(height, width) / 7))


def hog_blocks(image: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """skimage HOG of one grey image as blocks: (rows, cols, 2, 2, orientations)."""
    feature = need("skimage.feature")
    cell = hog_cell(spec, *image.shape)
    if min(image.shape) < 2 * cell:
        raise ConfigError(f"images {image.shape[0]}×{image.shape[1]} are too small for HOG "
                          f"with {cell}-pixel cells and 2×2-cell blocks; lower hog_cell or pass "
                          "--image-size")
    return feature.hog(image, orientations=spec.hog_orientations,
                       pixels_per_cell=(cell, cell), cells_per_block=(2, 2),
                       block_norm="L2-Hys", feature_vector=False)


def dense_grid(height: int, width: int, sizes: Sequence[int], step: int) -> list[tuple]:
    """(x, y, size) of every grid keypoint: centres ``step`` apart, patches inside the image."""
    points = []
    for size in sizes:
        half = size / 2
        ys = np.arange(half, height - half + 1e-9, step)
        xs = np.arange(half, width - half + 1e-9, step)
        points += [(float(x), float(y), float(size)) for y in ys for x in xs]
    if not points:
        raise ConfigError(f"images {height}×{width} are smaller than the smallest dense-SIFT "
                          f"patch ({min(sizes)} px); pass --image-size 32 or larger")
    return points


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def dsift(image: np.ndarray, spec: FeatureSpec, sift=None) -> tuple[np.ndarray, np.ndarray]:
    """SIFT descriptors of one grey image at upright grid keypoints (OpenCV's ``compute``)."""
    cv2 = need("cv2")
    sift = sift or cv2.SIFT_create()
    h, w = image.shape
    grid = dense_grid(h, w, spec.dsift_sizes, spec.dsift_step)
    kps = [cv2.KeyPoint(x, y, s, 0) for x, y, s in grid]
    kps, desc = sift.compute(to_uint8(image), kps)
    pos = np.array([(k.pt[1] / h, k.pt[0] / w) for k in kps], dtype=np.float32)
    return _desc(desc, 128), pos.reshape(-1, 2)


def sift_keypoints(image: np.ndarray, spec: FeatureSpec, sift=None) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """SIFT at detected keypoints (at most ``sift_max_keypoints``, strongest first).

    Small images are upscaled so the smallest side is ≥ 64 px (bilinear). An image where SIFT
    finds nothing gets zero descriptors; its encoding is then the zero vector.
    """
    cv2 = need("cv2")
    sift = sift or cv2.SIFT_create(nfeatures=spec.sift_max_keypoints)
    img = to_uint8(image)
    h, w = img.shape
    scale = max(1, int(np.ceil(SIFT_MIN_SIDE / max(1, min(h, w)))))
    if scale > 1:
        img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    kps, desc = sift.detectAndCompute(img, None)
    kps, desc = list(kps)[:spec.sift_max_keypoints], _desc(desc, 128)[:spec.sift_max_keypoints]
    pos = np.array([(k.pt[1] / (h * scale), k.pt[0] / (w * scale)) for k in kps],
                   dtype=np.float32).reshape(-1, 2)
    return desc, np.clip(pos, 0.0, 0.999999)


def _desc(desc: np.ndarray | None, dim: int) -> np.ndarray:
    return (np.zeros((0, dim), np.float32) if desc is None
            else np.asarray(desc, dtype=np.float32).reshape(-1, dim))


def hog_local(image: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """HOG blocks as local descriptors (2·2·orientations each), positions at block centres."""
    blocks = hog_blocks(image, spec)
    rows, cols = blocks.shape[:2]
    desc = blocks.reshape(rows * cols, -1).astype(np.float32)
    ys, xs = np.meshgrid((np.arange(rows) + 0.5) / rows * 0.999999,
                         (np.arange(cols) + 0.5) / cols * 0.999999, indexing="ij")
    return desc, np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float32)


def extract(images: np.ndarray, spec: FeatureSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(descriptors, positions) of each image of a uint8 (N, C, H, W) batch, in order."""
    g = grey(images)
    if spec.name == "hog":
        for img in g:
            yield hog_local(img, spec)
        return
    cv2 = need("cv2")
    if spec.name == "dsift":
        sift = cv2.SIFT_create()
        for img in g:
            yield dsift(img, spec, sift)
    else:
        sift = cv2.SIFT_create(nfeatures=spec.sift_max_keypoints)
        for img in g:
            yield sift_keypoints(img, spec, sift)
