"""The pre-deep-learning pipeline: HOG / dense SIFT / SIFT → BoVW / VLAD / Fisher (+ spatial
pyramid) → scikit-learn classifier, and ``compare`` to set its results beside CNN runs.

Needs the optional extra 'classic' (scikit-image, OpenCV): ``pip install "cnnlab[classic]"``.
"""

from .compare import compare
from .encoding import ENCODINGS, Codebook, bovw, encode, fisher, fit_codebook, vlad
from .features import FEATURES, FeatureSpec, extract, grey
from .pipeline import CLASSIFIERS, fit_classifier, run_classic

__all__ = ["CLASSIFIERS", "Codebook", "ENCODINGS", "FEATURES", "FeatureSpec", "bovw", "compare",
           "encode", "extract", "fisher", "fit_classifier", "fit_codebook", "grey", "run_classic",
           "vlad"]
