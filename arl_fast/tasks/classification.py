"""Classification by TS2Vec's protocols: full-series representations, an SVM or a logistic regression.

Each series is encoded into one vector (the encoder's output max-pooled
over the full series), a classifier is fit on the train split's vectors and
scored on the test split's.  ``"svm"`` is TS2Vec's default protocol (RBF SVM,
C chosen by 5-fold grid search when every class has enough series);
``"logreg"`` is the logistic regression the paper reports.
"""

from __future__ import annotations

import statistics

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from ..data import load_uea
from ..plots import write_compare_plots

CLASSIFIERS = ("svm", "logreg")
TASK = "classification"
DEFAULT_DATASET = "ACSF1"  # length 1460, ships with aeon: the loss is most of a training step
METRICS = ("accuracy",)
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


# ---------------------------------------------------------------------------------------------- the command


def add_arguments(group) -> None:
    """``compare``'s classification options."""
    group.add_argument("--classifier", choices=CLASSIFIERS, default="svm",
                       help="classification: svm, TS2Vec's protocol; logreg, the paper's logistic regression (svm)")


def load(dataset: str, data_dir=None, args=None):
    """A UCR/UEA dataset (see :func:`arl_fast.data.load_uea`)."""
    return load_uea(dataset, data_dir)


def train_series(data) -> np.ndarray:
    return data.X_train


def evaluate(model, data, args=None):
    """Test accuracy of a trained model, and the test embeddings (for the t-SNE plot)."""
    train_features = model.encode(data.X_train, encoding_window="full_series")
    test_features = model.encode(data.X_test, encoding_window="full_series")
    classifier = getattr(args, "classifier", "svm")
    accuracy = classification_accuracy(train_features, data.y_train, test_features, data.y_test, classifier)
    return {"accuracy": accuracy}, (test_features, data.y_test)


def baseline(data, args=None):
    """No non-learned row for classification."""
    return None


def summarize(runs: list[dict]) -> dict:
    """Per dataset and loss, the mean training time and accuracy over seeds; with both losses, their time
    ratio (adaptive / hierarchical)."""
    summary: dict = {}
    for run in runs:
        summary.setdefault(run["dataset"], {}).setdefault(run["loss"], []).append(run)
    for dataset, per_loss in summary.items():
        for loss, loss_runs in per_loss.items():
            per_loss[loss] = {
                "train_time_s": statistics.fmean(r["train_time_s"] for r in loss_runs),
                "accuracy": statistics.fmean(r["accuracy"] for r in loss_runs),
            }
        if "hierarchical" in per_loss and "adaptive" in per_loss:
            per_loss["time_ratio"] = per_loss["adaptive"]["train_time_s"] / per_loss["hierarchical"]["train_time_s"]
    return summary


def totals(summary: dict, losses: list[str]) -> dict:
    """Total training time per loss over the datasets, and the ratio of the totals."""
    total = {loss: sum(per_loss[loss]["train_time_s"] for per_loss in summary.values() if loss in per_loss)
             for loss in losses}
    if total.get("hierarchical") and "adaptive" in total:
        total["time_ratio"] = total["adaptive"] / total["hierarchical"]
    return total


def format_table(results: dict) -> str:
    """The paper's Table 1: dataset, length, time and accuracy per loss, time ratio; then the totals."""
    losses, lengths = results["losses"], results["lengths"]
    summary, total = results["summary"], results["total"]
    with_ratio = "time_ratio" in total
    header1 = ["", ""] + [part for loss in losses for part in (loss, "")] + (["adaptive /"] if with_ratio else [])
    header2 = ["Dataset", "Length"] + ["time (s)", "acc."] * len(losses) + (["hier. time"] if with_ratio else [])
    rows = []
    for dataset, per_loss in summary.items():
        row = [dataset, str(lengths[dataset])]
        for loss in losses:
            row += [f"{per_loss[loss]['train_time_s']:.2f}", f"{per_loss[loss]['accuracy']:.3f}"]
        rows.append(row + ([f"{per_loss['time_ratio']:.2f}"] if with_ratio else []))
    total_row = ["Total", "-"] + [part for loss in losses for part in (f"{total[loss]:.2f}", "-")]
    rows.append(total_row + ([f"{total['time_ratio']:.2f}"] if with_ratio else []))
    table = [header1, header2, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header2))]
    lines = []
    for row in table:
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(2, "-" * len(lines[1]))
    lines.insert(len(lines) - 1, "-" * len(lines[1]))
    return "\n".join(lines)




def write_plots(out_dir, results: dict, artefacts: dict):
    """t-SNE of each loss's test embeddings (lowest seed), the paper's fig. 2."""
    embeddings = {}
    for dataset, loss, seed in sorted(artefacts, key=lambda key: key[2]):
        embeddings.setdefault((dataset, loss), artefacts[(dataset, loss, seed)])
    return write_compare_plots(out_dir, results, {}, embeddings)
