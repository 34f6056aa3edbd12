"""From a variable set of local descriptors to one fixed-length vector per image.

- Bag of visual words: Csurka, Dance, Fan, Willamowski & Bray, "Visual Categorization with Bags
  of Keypoints", ECCV Workshop 2004 — a k-means codebook, a histogram of nearest centres.
- VLAD: Jégou, Douze, Schmid & Pérez, "Aggregating local descriptors into a compact image
  representation", CVPR 2010 — the sum of residuals x − c to the nearest centre, per centre.
- Fisher vectors: Perronnin, Sánchez & Mensink, "Improving the Fisher Kernel for Large-Scale
  Image Classification", ECCV 2010 — gradients of a diagonal GMM's log-likelihood w.r.t. its
  means and variances, with power ("signed square root") and L2 normalization.
- Spatial pyramid: Lazebnik, Schmid & Ponce, "Beyond Bags of Features", CVPR 2006 — the same
  encoding over the whole image and each quadrant (1×1 + 2×2), concatenated.

Encodings are computed in float64: VLAD and Fisher sum many small residuals, and the tests hold
them to a float64 reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, unknown

ENCODINGS = ("none", "bovw", "vlad", "fisher")
DEFAULT_CODEBOOK = {"bovw": 256, "vlad": 32, "fisher": 32}
FISHER_PCA = 64  # Perronnin 2010 reduce SIFT to 64 dims before the GMM


@dataclass
class Codebook:
    """A fitted codebook: k-means centres (BoVW, VLAD) or a diagonal GMM (Fisher), plus PCA."""

    encoding: str
    centers: np.ndarray  # (K, D) k-means centres or GMM means
    weights: np.ndarray | None = None  # (K,) GMM mixture weights
    variances: np.ndarray | None = None  # (K, D) GMM diagonal variances
    pca_mean: np.ndarray | None = None  # (D_in,)
    pca_components: np.ndarray | None = None  # (D, D_in)

    @property
    def size(self) -> int:
        return int(self.centers.shape[0])

    def project(self, desc: np.ndarray) -> np.ndarray:
        desc = np.asarray(desc, dtype=np.float64)
        if self.pca_components is None:
            return desc
        return (desc - self.pca_mean) @ self.pca_components.T

    def dim(self) -> int:
        """Length of one (non-pyramid) encoding."""
        k, d = self.centers.shape
        return {"bovw": k, "vlad": k * d, "fisher": 2 * k * d}[self.encoding]


def check_encoding(encoding: str) -> None:
    if encoding not in ENCODINGS:
        raise ConfigError(unknown("encoding", encoding, ENCODINGS))


def fit_codebook(sample: np.ndarray, encoding: str, size: int, *, seed: int = 0,
                 pca: int | None = None, max_iter: int = 100) -> Codebook:
    """Fit the codebook on a sample of training descriptors (N, D).

    k-means is scikit-learn's MiniBatchKMeans (k-means++ seeding); the GMM is
    GaussianMixture(covariance_type='diag') started from k-means. ``pca`` reduces the descriptors
    first (used for Fisher vectors, whose length is 2·K·D).
    """
    check_encoding(encoding)
    if encoding == "none":
        raise ConfigError("encoding 'none' has no codebook")
    n = int(sample.shape[0])
    if size < 1:
        raise ConfigError(f"--codebook-size must be ≥ 1, got {size}")
    if size > n:
        raise ConfigError(f"a codebook of {size} centres needs at least {size} descriptors, but "
                          f"the training sample has {n}; lower --codebook-size or use more "
                          "training images (--max-train)")
    x = np.asarray(sample, dtype=np.float64)
    mean = comps = None
    if pca and pca < x.shape[1]:
        from sklearn.decomposition import PCA

        p = PCA(n_components=pca, random_state=seed).fit(x)
        mean, comps = p.mean_, p.components_
        x = (x - mean) @ comps.T
    if encoding == "fisher":
        from sklearn.mixture import GaussianMixture

        gmm = GaussianMixture(size, covariance_type="diag", reg_covar=1e-6, max_iter=max_iter,
                              random_state=seed).fit(x)
        return Codebook(encoding, gmm.means_, gmm.weights_, gmm.covariances_, mean, comps)
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(size, random_state=seed, n_init=3, batch_size=4096,
                         max_iter=max_iter).fit(x)
    return Codebook(encoding, km.cluster_centers_.astype(np.float64), pca_mean=mean,
                    pca_components=comps)


def nearest(desc: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) for each descriptor."""
    d2 = (desc ** 2).sum(1)[:, None] - 2 * desc @ centers.T + (centers ** 2).sum(1)[None]
    return d2.argmin(1)


def power_l2(v: np.ndarray) -> np.ndarray:
    """Signed square root, then L2 (Perronnin 2010 §3; Jégou 2012): tames bursty components."""
    v = np.sign(v) * np.sqrt(np.abs(v))
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


def bovw(desc: np.ndarray, cb: Codebook) -> np.ndarray:
    """L1-normalized histogram of nearest centres (sums to 1; zeros for no descriptors)."""
    hist = np.zeros(cb.size)
    if len(desc):
        hist = np.bincount(nearest(cb.project(desc), cb.centers), minlength=cb.size) / len(desc)
    return hist.astype(np.float64)


def vlad(desc: np.ndarray, cb: Codebook) -> np.ndarray:
    """v_k = Σ_{x: NN(x)=k} (x − c_k), concatenated over k, then power + L2 normalization."""
    k, d = cb.centers.shape
    v = np.zeros((k, d))
    if len(desc):
        x = cb.project(desc)
        nn = nearest(x, cb.centers)
        np.add.at(v, nn, x - cb.centers[nn])
    return power_l2(v.ravel())


def posteriors(x: np.ndarray, cb: Codebook) -> np.ndarray:
    """γ_t(k): soft assignments of descriptors (T, D) to the diagonal GMM's components."""
    var = cb.variances
    log_p = (-0.5 * (((x[:, None, :] - cb.centers[None]) ** 2) / var[None]).sum(2)
             - 0.5 * np.log(2 * np.pi * var).sum(1)[None] + np.log(cb.weights)[None])
    log_p -= log_p.max(1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(1, keepdims=True)


def fisher(desc: np.ndarray, cb: Codebook) -> np.ndarray:
    """Improved Fisher vector [G_μ, G_σ] (Perronnin 2010, eqs. 7–8), power + L2 normalized.

    G_μ,k = 1/(T√w_k) Σ_t γ_t(k) (x_t − μ_k)/σ_k
    G_σ,k = 1/(T√(2w_k)) Σ_t γ_t(k) [(x_t − μ_k)²/σ_k² − 1]
    """
    k, d = cb.centers.shape
    if not len(desc):
        return np.zeros(2 * k * d)
    x = cb.project(desc)
    t = x.shape[0]
    gamma = posteriors(x, cb)  # (T, K)
    sigma = np.sqrt(cb.variances)
    u = (x[:, None, :] - cb.centers[None]) / sigma[None]  # (T, K, D) whitened residuals
    g_mu = np.einsum("tk,tkd->kd", gamma, u) / (t * np.sqrt(cb.weights))[:, None]
    g_sigma = np.einsum("tk,tkd->kd", gamma, u ** 2 - 1) / (t * np.sqrt(2 * cb.weights))[:, None]
    return power_l2(np.concatenate([g_mu.ravel(), g_sigma.ravel()]))


ENCODERS = {"bovw": bovw, "vlad": vlad, "fisher": fisher}
PYRAMID_CELLS = 5  # 1×1 + 2×2


def encode(desc: np.ndarray, pos: np.ndarray, cb: Codebook, *, pyramid: bool = False
           ) -> np.ndarray:
    """One image's encoding; with ``pyramid`` the whole image and its four quadrants, each
    encoded (and normalized) on its own, concatenated and scaled by 1/√5 (Lazebnik 2006)."""
    fn = ENCODERS[cb.encoding]
    if not pyramid:
        return fn(desc, cb)
    parts = [fn(desc, cb)]
    quadrant = (np.floor(pos[:, 0] * 2) * 2 + np.floor(pos[:, 1] * 2)).astype(int)
    for q in range(4):
        parts.append(fn(desc[quadrant == q], cb))
    return np.concatenate(parts) / np.sqrt(PYRAMID_CELLS)
