"""Linear classifiers on frozen features (scikit-learn), C chosen by CV on the training split."""

from __future__ import annotations

import warnings

import numpy as np

CLASSIFIERS = ("logreg", "svm")
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def fit_linear(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
               *, classifier: str = "logreg", c_grid=C_GRID, max_folds: int = 5,
               seed: int = 0) -> dict:
    """Fit logistic regression or a linear SVM; C by stratified CV on the training split only.

    Folds = min(``max_folds``, the smallest class count); with one image per class no CV is
    possible and C = 1. Returns test accuracy, the chosen C and the number of folds.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import LinearSVC

    if classifier not in CLASSIFIERS:
        from ..errors import ConfigError
        raise ConfigError(f"unknown classifier '{classifier}'; choose from "
                          f"{', '.join(CLASSIFIERS)}")
    est = (LogisticRegression(max_iter=2000) if classifier == "logreg"
           else LinearSVC(max_iter=5000, random_state=seed))
    folds = int(min(max_folds, np.bincount(y_train).min()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds >= 2:
            search = GridSearchCV(est, {"C": list(c_grid)},
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
            search.fit(x_train, y_train)
            best, c = search.best_estimator_, float(search.best_params_["C"])
        else:
            best, c, folds = est.set_params(C=1.0).fit(x_train, y_train), 1.0, 0
    acc = float((best.predict(x_test) == y_test).mean())
    return {"accuracy": acc, "C": c, "cv_folds": folds}
