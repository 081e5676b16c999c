"""Classification accuracy of learned representations, by TS2Vec's protocols.

Each series is encoded into one vector (the encoder's output max-pooled
over the full series), a classifier is fit on the train split's vectors and
scored on the test split's.  ``"svm"`` is TS2Vec's default protocol (RBF SVM,
C chosen by 5-fold grid search when every class has enough series);
``"logreg"`` is the logistic regression the paper reports.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

CLASSIFIERS = ("svm", "logreg")
_SVM_C_GRID = [0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, np.inf]


def _subsample(features, labels, max_samples):
    if len(features) <= max_samples:
        return features, labels
    features, _, labels, _ = train_test_split(
        features, labels, train_size=max_samples, random_state=0, stratify=labels
    )
    return features, labels


def fit_svm(features: np.ndarray, labels: np.ndarray, max_samples: int = 10_000):
    """TS2Vec's SVM: hard margin when data is scarce, else C by 5-fold grid search."""
    n_classes = len(np.unique(labels))
    svm = SVC(C=np.inf, gamma="scale")
    if len(features) // n_classes < 5 or len(features) < 50:
        return svm.fit(features, labels)
    features, labels = _subsample(features, labels, max_samples)
    search = GridSearchCV(svm, {"C": _SVM_C_GRID}, cv=5)
    return search.fit(features, labels).best_estimator_


def fit_logreg(features: np.ndarray, labels: np.ndarray, max_samples: int = 100_000):
    """TS2Vec's linear protocol: standardised features, one-vs-rest logistic regression."""
    features, labels = _subsample(features, labels, max_samples)
    model = make_pipeline(
        StandardScaler(), OneVsRestClassifier(LogisticRegression(random_state=0, max_iter=1_000_000))
    )
    return model.fit(features, labels)


def classification_accuracy(train_features, train_labels, test_features, test_labels, classifier: str = "svm") -> float:
    """Fit ``classifier`` ("svm" or "logreg") on the train features and return its test accuracy."""
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    for name, features, labels in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if np.ndim(features) != 2 or np.ndim(labels) != 1 or len(features) != len(labels):
            raise ValueError(
                f"{name}_features must be (n, d) and {name}_labels (n,), got {np.shape(features)} and {np.shape(labels)}"
            )
    fit = fit_svm if classifier == "svm" else fit_logreg
    model = fit(np.asarray(train_features), np.asarray(train_labels))
    return float(model.score(np.asarray(test_features), np.asarray(test_labels)))


def evaluate_classification(model, X_train, y_train, X_test, y_test, classifier: str = "svm") -> float:
    """Test accuracy of a trained TS2Vec ``model``: full-series encodings, then ``classifier``."""
    return classification_accuracy(
        model.encode(X_train, encoding_window="full_series"), y_train,
        model.encode(X_test, encoding_window="full_series"), y_test, classifier,
    )
