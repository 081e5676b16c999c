"""TS2VecTransformer: aeon's estimator checks, agreement with TS2Vec, pipelines and bad input."""

import pickle

import numpy as np
import pytest
import torch
from aeon.datasets import load_classification
from aeon.testing.estimator_checking import check_estimator
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import RidgeClassifierCV
from sklearn.pipeline import make_pipeline

from arl_fast import TS2Vec, hierarchical_contrastive_loss
from arl_fast.aeon import TS2VecTransformer
from arl_fast.data import to_ts2vec

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(output_dims=8, hidden_dims=8, depth=1, n_epochs=2, batch_size=4, device="cpu")


def collection(n=6, channels=2, length=16, seed=0):
    """aeon's layout: (n_cases, n_channels, n_timepoints)."""
    return np.random.default_rng(seed).standard_normal((n, channels, length))


def test_passes_aeons_estimator_checks():
    results = check_estimator(TS2VecTransformer, raise_exceptions=True)
    names = {name.split("(")[0] for name in results}
    # Nothing is skipped: the estimator claims to pickle and to be deterministic, so both checks run.
    assert {"check_persistence_via_pickle", "check_fit_deterministic", "check_transformer_output"} <= names
    assert all(result == "PASSED" for result in results.values())
    datatypes = {name.split("datatype=")[1].rstrip(")") for name in results if "datatype=" in name}
    assert {"UnequalLengthMultivariate-Classification-np-list", "MissingValues-Classification-numpy3D"} <= datatypes


def test_more_threads_change_features_only_by_rounding():
    # aeon's opt-in check_estimator_multithreading (run with --enablethreading) wants identical output; torch's
    # multithreaded kernels sum in another order, so features agree to rounding only (aeon excludes that check
    # for FreshPRINCE and TSFresh for the same reason: "sometimes produces different results between single and
    # multithreading").  For one n_jobs they are identical: test_random_state_fixes_the_features.
    X = collection(n=8, length=64)
    one = TS2VecTransformer(**TINY, random_state=0, n_jobs=1).fit(X)
    two = TS2VecTransformer(**TINY, random_state=0, n_jobs=2).fit(X)
    assert (one._n_jobs, two._n_jobs) == (1, 2)
    np.testing.assert_allclose(two.transform(X), one.transform(X), rtol=1e-4, atol=1e-5)


def test_features_are_ts2vecs_trained_with_the_same_seed():
    X = collection()
    features = TS2VecTransformer(**TINY, random_state=3).fit_transform(X)
    model = TS2Vec(2, output_dims=8, hidden_dims=8, depth=1, batch_size=4, device="cpu", seed=3)
    log = model.fit(X.transpose(0, 2, 1), n_epochs=2, progress=False)
    np.testing.assert_array_equal(features, model.encode(X.transpose(0, 2, 1), encoding_window="full_series"))
    assert features.shape == (6, 8) and features.dtype == np.float32
    fitted = TS2VecTransformer(**TINY, random_state=3).fit(X)
    assert isinstance(fitted.model_, TS2Vec) and fitted.history_ == log and len(log) == 2


def test_random_state_fixes_the_features():
    X = collection()
    a, b, c = (TS2VecTransformer(**TINY, random_state=s).fit_transform(X) for s in (0, 0, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    d, e = (TS2VecTransformer(**TINY, random_state=np.random.RandomState(5)).fit_transform(X) for _ in range(2))
    np.testing.assert_array_equal(d, e)


@pytest.mark.parametrize("window", [3, None])
def test_per_timestamp_windows_give_a_collection(window):
    X = collection(length=12)
    transformer = TS2VecTransformer(**TINY, encoding_window=window, random_state=0).fit(X)
    out = transformer.transform(X)
    assert transformer.get_tag("output_data_type") == "Collection"
    expected = transformer.model_.encode(to_ts2vec(X), encoding_window=window).transpose(0, 2, 1)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == (6, 8, 12)
    unequal = transformer.transform([X[0][:, :5], X[1]])
    assert [s.shape for s in unequal] == [(8, 5), (8, 12)]
    np.testing.assert_allclose(unequal[1], out[1], rtol=1e-5, atol=1e-6)  # other batch: rounding differs


def test_unequal_lengths_are_encoded_at_their_own_length():
    X = collection(n=5, length=20)
    ragged = [s[:, : 10 + 2 * i] for i, s in enumerate(X)]
    transformer = TS2VecTransformer(**TINY, random_state=0).fit(ragged)
    features = transformer.transform(ragged)
    assert features.shape == (5, 8)
    for series, row in zip(ragged, features):  # a series' features do not depend on the rest of X
        alone = transformer.model_.encode(series.T[None].astype(np.float32), "full_series")[0]
        np.testing.assert_allclose(alone, row, rtol=1e-5, atol=1e-6)  # batch size changes rounding only


def test_missing_values_and_univariate_2d_input():
    X = collection(channels=1)
    X[:, :, 3] = np.nan
    features = TS2VecTransformer(**TINY, random_state=0).fit_transform(X)
    assert np.isfinite(features).all()
    flat = TS2VecTransformer(**TINY, random_state=0).fit_transform(X[:, 0])  # (n_cases, n_timepoints)
    np.testing.assert_array_equal(flat, features)


def test_pickles_and_keeps_the_checkpoint_api(tmp_path):
    X = collection()
    transformer = TS2VecTransformer(**TINY, loss="adaptive", random_state=0).fit(X)
    restored = pickle.loads(pickle.dumps(transformer))
    np.testing.assert_array_equal(restored.transform(X), transformer.transform(X))
    transformer.model_.save(tmp_path / "model.pt")
    model = TS2Vec.from_checkpoint(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(model.encode(to_ts2vec(X), "full_series"), transformer.transform(X))


def test_n_jobs_sets_torch_threads_during_fit_and_restores_them():
    seen = []

    def loss(z1, z2):
        seen.append(torch.get_num_threads())
        return hierarchical_contrastive_loss(z1, z2)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        TS2VecTransformer(**TINY, loss=loss, n_jobs=2, random_state=0).fit(collection())
        assert seen and set(seen) == {2}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_tags_follow_device_and_window():
    assert not TS2VecTransformer(device="cpu").get_tag("non_deterministic")
    assert TS2VecTransformer(device="cuda").get_tag("non_deterministic")
    assert TS2VecTransformer().get_tag("output_data_type") == "Tabular"
    assert TS2VecTransformer(encoding_window=5).get_tag("output_data_type") == "Collection"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # aeon's own checks warn on all-NaN series
def test_bad_input_raises_clear_errors():
    X = collection()
    with pytest.raises(NotFittedError, match="has not been fitted"):
        TS2VecTransformer(**TINY).transform(X)
    with pytest.raises(TypeError, match="2D or 3D"):
        TS2VecTransformer(**TINY).fit(X[None])
    with pytest.raises(ValueError, match="at least one series"):
        TS2VecTransformer(**TINY).fit(X[:0])
    with pytest.raises(ValueError, match="at least one series"):
        TS2VecTransformer(**TINY).fit([])
    with pytest.raises(ValueError, match="at least one timepoint"):
        TS2VecTransformer(**TINY).fit(X[:, :, :0])
    fitted = TS2VecTransformer(**TINY, random_state=0).fit(X)
    with pytest.raises(ValueError, match="number of channels"):
        fitted.transform(collection(channels=3))
    nan_series = X.copy()
    nan_series[4] = np.nan
    with pytest.raises(ValueError, match=r"all NaN, at index 4"):
        TS2VecTransformer(**TINY).fit(nan_series)
    with pytest.raises(ValueError, match=r"all NaN, at index 4"):
        fitted.transform(nan_series)
    with pytest.raises(ValueError, match="at least 2 timestamps"):
        TS2VecTransformer(**TINY).fit(X[:, :, :1])


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(random_state="seed"), TypeError, "random_state must be"),
        (dict(random_state=-1), ValueError, "random_state must be"),
        (dict(encoding_window="mean"), ValueError, "encoding_window must be"),
        (dict(encoding_window=0), ValueError, "encoding_window must be >= 1"),
        (dict(loss="bogus"), ValueError, "loss must be"),
        (dict(backend="bogus"), ValueError, "unknown backend 'bogus'"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(n_epochs=1.5), TypeError, "n_epochs must be an int"),
        (dict(device="gpu0"), ValueError, "device must be"),
        (dict(n_jobs="all"), ValueError, "n_jobs"),
        (dict(verbose="yes"), TypeError, "verbose must be a bool"),
    ],
)
def test_bad_parameters_are_named_at_fit(params, error, match):
    transformer = TS2VecTransformer(**{**TINY, **params})  # stored unchanged, checked by fit
    with pytest.raises(error, match=match):
        transformer.fit(collection())


def test_pipeline_on_basic_motions():
    """The issue's pipeline on BasicMotions (4 classes), with a small model trained briefly.

    Random dilated-convolution features already separate BasicMotions well, so the score checks the plumbing
    (layout, order of the cases, labels) and the falling loss checks that fit trains.
    """
    X_train, y_train = load_classification("BasicMotions", split="train")
    X_test, y_test = load_classification("BasicMotions", split="test")
    transformer = TS2VecTransformer(output_dims=32, hidden_dims=16, depth=3, n_epochs=10, random_state=0)
    clf = make_pipeline(transformer, RidgeClassifierCV())
    assert clf.fit(X_train, y_train).score(X_test, y_test) >= 0.9
    losses = [entry["loss"] for entry in clf[0].history_]
    assert len(losses) == 10 and np.mean(losses[-3:]) < np.mean(losses[:3])


def test_pipeline_on_unequal_length_japanese_vowels():
    X_train, y_train = load_classification("JapaneseVowels", split="train")  # 12 channels, lengths 7 to 29
    X_test, y_test = load_classification("JapaneseVowels", split="test")
    assert isinstance(X_train, list) and len({s.shape[1] for s in X_train}) > 1
    transformer = TS2VecTransformer(output_dims=32, hidden_dims=16, depth=3, n_epochs=2, random_state=0)
    clf = make_pipeline(transformer, RidgeClassifierCV())
    assert clf.fit(X_train, y_train).score(X_test, y_test) >= 0.85  # 9 classes
