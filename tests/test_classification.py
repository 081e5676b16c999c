import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from arl_fast.tasks import classification
from arl_fast.tasks.classification import classification_accuracy, evaluate_classification, fit_logreg, fit_svm
from arl_fast.ts2vec import TS2Vec

pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n_per_class, n_classes=3, dims=5, spread=0.3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_classes, dims)) * 3
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + spread * rng.standard_normal((len(labels), dims)), labels


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_separable_features_are_classified(classifier):
    train, train_labels = blobs(10, seed=0)
    test, test_labels = blobs(10, seed=0)
    test += 0.1 * np.random.default_rng(1).standard_normal(test.shape)
    assert classification_accuracy(train, train_labels, test, test_labels, classifier) == 1.0


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_random_labels_are_near_chance(classifier):
    rng = np.random.default_rng(0)
    train, test = rng.standard_normal((120, 5)), rng.standard_normal((300, 5))
    accuracy = classification_accuracy(train, rng.integers(0, 3, 120), test, rng.integers(0, 3, 300), classifier)
    assert accuracy < 0.5


def test_svm_grid_search_only_with_enough_data(monkeypatch):
    searched = []
    original_fit = GridSearchCV.fit

    def spy(self, *args, **kwargs):
        searched.append(self.param_grid["C"])
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(GridSearchCV, "fit", spy)
    small = fit_svm(*blobs(4))  # 12 series: TS2Vec fits a hard-margin SVM directly
    assert searched == [] and small.C == np.inf
    fit_svm(*blobs(20))  # 60 series, 20 per class: C by 5-fold grid search
    assert searched == [[0.0001, 0.001, 0.01, 0.1, 1, 10, 100, 1000, 10000, np.inf]]


def test_logreg_standardises_features():
    features, labels = blobs(10)
    model = fit_logreg(features * 1000 + 50, labels)
    assert model.score(features * 1000 + 50, labels) == 1.0
    assert model.steps[0][0] == "standardscaler"


def test_evaluate_classification_encodes_full_series():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 6)
    x = rng.standard_normal((12, 20, 1)).astype(np.float32) * 0.1
    x[labels == 1] += 3.0  # an offset the max-pooled features keep
    model = TS2Vec(1, output_dims=8, hidden_dims=8, depth=1, device="cpu", seed=0)
    windows, encode = [], model.encode
    model.encode = lambda X, encoding_window=None: windows.append(encoding_window) or encode(X, encoding_window)
    assert evaluate_classification(model, x, labels, x, labels, "logreg") == 1.0
    assert windows == ["full_series", "full_series"]


def test_bad_arguments():
    features, labels = blobs(5)
    with pytest.raises(ValueError, match="classifier"):
        classification_accuracy(features, labels, features, labels, "knn")
    with pytest.raises(ValueError, match="train_features"):
        classification_accuracy(features[:, None], labels, features, labels)
    with pytest.raises(ValueError, match="test_labels"):
        classification_accuracy(features, labels, features, labels[:-1])
    assert classification.CLASSIFIERS == ("svm", "logreg")
