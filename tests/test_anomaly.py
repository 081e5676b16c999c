"""The anomaly protocol: point adjustment, the time grid, normalisation, suppression, the ADF test, the
preprocessing, and end to end on synthetic series with injected spikes and level shifts."""

import json
import math
import warnings

import numpy as np
import pytest

from arl_fast import TS2Vec
from arl_fast.data.nab import anomaly_dataset
from arl_fast.tasks import anomaly as A

# ---------------------------------------------------------------------------- point adjustment


@pytest.mark.parametrize("label, pred, delay, expected", [
    # the alarm at 3 is the segment's 3rd point: found with delay 2, missed with delay 1
    ([0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0], 1, [0, 0, 0, 0, 0, 0]),
    ([0, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0], 2, [0, 1, 1, 1, 1, 0]),
    # delay 0: only an alarm on the segment's first point counts
    ([0, 1, 1, 0], [0, 1, 0, 0], 0, [0, 1, 1, 0]),
    ([0, 1, 1, 0], [0, 0, 1, 0], 0, [0, 0, 0, 0]),
    # a segment at the start and one at the end of the series
    ([1, 1, 1, 0, 0, 1, 1], [0, 1, 0, 0, 1, 0, 1], 1, [1, 1, 1, 0, 1, 1, 1]),
    ([1, 1, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1], 0, [0, 0, 0, 0, 0, 0]),
    # a segment shorter than the delay, and alarms outside segments kept as they are
    ([0, 1, 0, 0, 0], [1, 1, 0, 1, 0], 5, [1, 1, 0, 1, 0]),
    # an alarm just before a segment does not find it
    ([0, 0, 1, 1, 0], [0, 1, 0, 0, 0], 3, [0, 1, 0, 0, 0]),
    # the whole series one segment
    ([1, 1, 1, 1], [0, 0, 0, 1], 3, [1, 1, 1, 1]),
    ([1, 1, 1, 1], [0, 0, 0, 1], 2, [0, 0, 0, 0]),
])
def test_point_adjust(label, pred, delay, expected):
    np.testing.assert_array_equal(A.point_adjust(np.array(pred), np.array(label), delay), expected)


def test_pooled_scores_count_points_over_series():
    # series 1: segment of 4 found (tp 4), one false alarm; series 2: segment of 2 missed (fn 2)
    preds = [np.array([1, 0, 1, 0, 0, 0, 0]), np.array([0, 0, 0, 1])]
    labels = [np.array([0, 0, 1, 1, 1, 1, 0]), np.array([0, 1, 1, 0])]
    scores = A.pooled_scores(preds, labels, [None, None], delay=1)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (4, 2, 2)
    assert scores["precision"] == pytest.approx(4 / 6) and scores["recall"] == pytest.approx(4 / 6)
    assert scores["f1"] == pytest.approx(4 / 6)
    none = A.pooled_scores([np.zeros(3)], [np.zeros(3)], [None], 1)
    assert (none["f1"], none["precision"], none["recall"]) == (0.0, 0.0, 0.0)


def test_time_grid_fills_gaps_with_zero_and_sorts():
    label, pred = A.to_grid(np.array([10, 0, 40, 20]), [1, 0, 1, 1], [0, 1, 1, 0])
    np.testing.assert_array_equal(label, [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(pred, [1, 0, 0, 0, 1])
    # irregular gaps that are not multiples of the smallest one still land on distinct grid points
    (grid,) = A.to_grid(np.array([0, 3, 5, 9]), [1, 1, 1, 1])
    assert grid.sum() == 4
    (single,) = A.to_grid(np.array([7]), [1])
    np.testing.assert_array_equal(single, [1])
    with pytest.raises(ValueError, match="distinct"):
        A.to_grid(np.array([0, 5, 5, 10]), [0, 1, 1, 0])


def test_a_gap_splits_a_segment_on_the_grid():
    # timestamps 0 1 2 _ 4 5: the labelled run 1,2,4,5 is two segments on the grid; an alarm at 4 finds the second
    stamps = np.array([0, 1, 2, 4, 5])
    label = np.array([0, 1, 1, 1, 1])
    pred = np.array([0, 0, 0, 1, 0])
    scores = A.pooled_scores([pred], [label], [stamps], delay=0)
    assert (scores["tp"], scores["fn"]) == (2, 2)
    by_position = A.pooled_scores([pred], [label], [None], delay=0)
    assert (by_position["tp"], by_position["fn"]) == (0, 4)


# ---------------------------------------------------------------------------- normalisation, threshold, suppression


def test_trailing_mean_excludes_the_current_point():
    x = np.arange(10.0)
    m = A.trailing_mean(x, 3)
    assert np.isnan(m[:3]).all()
    np.testing.assert_allclose(m[3:], np.arange(1.0, 8.0))  # mean(x[t-3:t]) = t - 2
    x[5] = np.nan
    m = A.trailing_mean(x, 3)
    assert np.isnan(m[6:9]).all() and m[9] == pytest.approx(7.0)
    assert np.isnan(A.trailing_mean(np.ones(3), 3)).all()


def test_normalise():
    score = np.r_[np.full(5, 2.0), 6.0]
    out = A.normalise(score, 5)
    assert np.isnan(out[:5]).all() and out[5] == pytest.approx(2.0)  # (6 - 2) / 2
    flat = A.normalise(np.r_[np.zeros(4), 1.0, 0.0], 3)
    assert np.isnan(flat[3]) and np.isinf(flat[4])  # 0 / 0 and 1 / 0


def test_threshold_over_finite_scores_after_the_skip():
    values = np.r_[np.full(3, 100.0), [1.0, 3.0, np.inf, np.nan]]
    assert A.threshold(values, skip=3, stds=4) == pytest.approx(2.0 + 4 * 1.0)
    assert A.threshold(np.full(5, np.nan), skip=0) == math.inf


@pytest.mark.parametrize("alarms, delay, expected", [
    ([1, 1, 1, 1, 1, 0, 1], 2, [1, 0, 0, 1, 0, 0, 1]),
    ([1, 0, 1, 0, 0, 1], 2, [1, 0, 0, 0, 0, 1]),
    ([1, 1, 0, 1], 0, [1, 1, 0, 1]),
    ([0, 0, 1, 1, 1, 1, 1, 1, 1, 1], 7, [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]),
    ([0, 0, 0], 3, [0, 0, 0]),
])
def test_suppress(alarms, delay, expected):
    np.testing.assert_array_equal(A.suppress(np.array(alarms, bool), delay), expected)


def test_detect_thresholds_on_the_training_half():
    rng = np.random.default_rng(0)
    score = 1.0 + 0.05 * rng.random(400)
    score[300] = 5.0  # a test spike
    score[100] = 5.0  # a training spike raises the threshold but stays below the test spike's score
    test, limit, alarms = A.detect(score, n_train=200, delay=7)
    assert len(test) == 200 and np.isfinite(limit)
    np.testing.assert_array_equal(np.flatnonzero(alarms), [100])


# ---------------------------------------------------------------------------- ADF test and preprocessing


def test_adf_pvalue_is_statsmodels():
    from statsmodels.tsa.stattools import adfuller

    rng = np.random.default_rng(1)
    walk, noise = np.cumsum(rng.normal(size=300)) * 7.0 + 100.0, rng.normal(size=300)
    for x in (walk, noise):
        assert A.adf_pvalue(x, 1) == adfuller(x, 1, result_object=True).pvalue
        assert A.adf_pvalue(x) == adfuller(x, result_object=True).pvalue  # lags by AIC
    assert A.adf_pvalue(walk) > 0.05 > A.adf_pvalue(noise)


def test_adf_pvalue_is_nan_where_statsmodels_refuses_the_input():
    assert math.isnan(A.adf_pvalue(np.ones(100)))  # constant
    assert math.isnan(A.adf_pvalue(np.array([1.0, 3.0, 2.0])))  # too short for one lag
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rank-deficient regression's warning is silenced, its p-value used
        assert 0.0 <= A.adf_pvalue(np.tile([0.0, 1.0], 50)) <= 1.0


@pytest.mark.parametrize("p_one, p_default, stationary", [
    (0.01, 0.01, True), (0.01, 0.2, False), (0.2, 0.01, False), (0.2, 0.2, False),
    (math.nan, math.nan, True), (math.nan, 0.01, True), (math.nan, 0.2, False), (0.01, math.nan, True),
])
def test_stationary_when_both_tests_reject_or_are_undefined(monkeypatch, p_one, p_default, stationary):
    monkeypatch.setattr(A, "adf_pvalue", lambda x, maxlag=None: {1: p_one, None: p_default}[maxlag])
    assert A.is_stationary(np.zeros(10)) is stationary


def test_stationarity_decisions():
    rng = np.random.default_rng(2)
    assert A.is_stationary(rng.normal(size=1000))
    assert not A.is_stationary(np.cumsum(rng.normal(size=1000)))
    assert A.is_stationary(np.ones(100))  # undefined test: counted as stationary
    assert A.is_stationary(np.array([1.0, 3.0, 2.0]))


def test_a_constant_difference_stops_the_differencing():
    values = np.arange(200.0)  # a ramp: a unit root by the default lags; its difference is constant, refused
    labels = np.zeros(200, np.int8)
    labels[150] = 1
    s = A.prepare(anomaly_dataset([values], [labels])).series[0]
    assert s.differences == 1 and (s.train == 0).all()


def test_prepare_differences_a_random_walk_and_keeps_the_test_half():
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=1000)) + 50
    labels = np.zeros(1000, np.int8)
    labels[700:710] = 1
    data = A.prepare(anomaly_dataset([values], [labels], timestamps=[np.arange(1000) * 60]))
    s = data.series[0]
    assert s.differences == 1
    assert len(s.train) == 499 and len(s.test) == 500  # one point lost to the difference, all from the training half
    np.testing.assert_array_equal(s.test_labels, labels[500:])
    np.testing.assert_array_equal(s.test_timestamps, np.arange(500, 1000) * 60)
    assert abs(s.train.mean()) < 1e-6 and s.train.std() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(s.test, (np.diff(values)[499:] - np.diff(values)[:499].mean())
                               / np.diff(values)[:499].std(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(A.baseline_scores(s), np.abs(np.diff(values)))  # |x_t - x_{t-1}| at the kept points


def test_pretraining_series_stacks_training_halves_nan_padded():
    rng = np.random.default_rng(4)
    data = A.prepare(anomaly_dataset([rng.normal(size=100), rng.normal(size=60)],
                                     [np.r_[np.zeros(90), np.ones(10)], np.zeros(60)]))
    X = A.train_series(data)
    assert X.shape == (2, 50, 1) and X.dtype == np.float32
    assert np.isnan(X[1, 30:]).all() and np.isfinite(X[1, :30]).all() and np.isfinite(X[0]).all()
    assert [s.name for s in data.scored] == ["series_0"]  # the unlabelled series trains only
    with pytest.raises(ValueError, match="no series has a labelled anomaly"):
        A.prepare(anomaly_dataset([rng.normal(size=50)], [np.zeros(50)]))


# ---------------------------------------------------------------------------- end to end


def synthetic(n=4, length=1200, seed=0, strength=1.0):
    """Sines with noise; in each test half three spikes (labelled 3 points) and a level shift of 30 points
    (labelled through 3 points after it ends), of ``strength`` times 6 and 4 noise-free amplitudes."""
    rng = np.random.default_rng(seed)
    values, labels = [], []
    for i in range(n):
        t = np.arange(length)
        x = np.sin(2 * np.pi * t / (40 + 7 * i)) + 0.1 * rng.normal(size=length)
        y = np.zeros(length, np.int8)
        for start in rng.choice(np.arange(length // 2 + 50, length - 60, 60), 3, replace=False):
            x[start] += rng.choice([-1, 1]) * 6 * strength
            y[start:start + 3] = 1
        start = length // 2 + 10 + 40 * i
        x[start:start + 30] += 4 * strength
        y[start:start + 33] = 1
        values.append(x)
        labels.append(y)
    return anomaly_dataset(values, labels, name="synthetic")


def tiny_model(seed=0):
    return TS2Vec(1, output_dims=16, hidden_dims=16, depth=3, seed=seed, max_train_length=3000, device="cpu")


def test_representation_scores_are_the_distance_of_two_causal_encodes(one_thread):
    model = tiny_model()
    model.fit(A.train_series(A.prepare(synthetic(n=2, length=600))), n_iters=3, progress=False)
    values = np.random.default_rng(5).normal(size=300).astype(np.float32)
    x = values.reshape(1, -1, 1)
    options = dict(causal=True, sliding_length=1, sliding_padding=A.SLIDING_PADDING, prune=False)
    seen, masked = model.encode(x, mask="all_true", **options)[0], model.encode(x, mask="mask_last", **options)[0]
    expected = np.abs(seen - masked).sum(axis=1)
    np.testing.assert_allclose(A.representation_scores(model, values, batch_size=64), expected, rtol=1e-4,
                               atol=1e-5 * expected.max())


def test_end_to_end_finds_spikes_and_level_shifts(one_thread):
    data = A.prepare(synthetic())
    model = tiny_model()
    model.fit(A.train_series(data), n_iters=20, progress=False)
    metrics, artefact = A.evaluate(model, data, None)
    assert metrics["f1"] >= 0.8, metrics
    assert sorted(artefact) == [s.name for s in data.scored]
    assert metrics["alarms"] == sum(int(r.alarms.sum()) for r in artefact.values())
    # the same labels on the series without the anomalies score badly: the F1 above is not free
    assert A.evaluate(model, A.prepare(synthetic(strength=0.0)), None)[0]["f1"] < 0.3
    row = A.baseline(data, None)
    assert set(A.METRICS) <= set(row) and row["data"]["scored"] == 4


def test_table_and_plot(tmp_path, one_thread):
    data = A.prepare(synthetic(n=2, length=800))
    runs, artefacts = [], {}
    for seed in (0, 1):
        for loss in ("hierarchical", "adaptive"):
            model = tiny_model(seed)
            model.fit(A.train_series(data), n_iters=2, progress=False)
            metrics, artefacts[("synthetic", loss, seed)] = A.evaluate(model, data, None)
            runs.append({"dataset": "synthetic", "loss": loss, "seed": seed, "train_time_s": 1.0 + seed, **metrics})
    results = {"task": "anomaly", "runs": runs, "summary": A.summarize(runs), "losses": ["hierarchical", "adaptive"],
               "baseline": {"synthetic": A.baseline(data, None)}}
    json.dumps(results)  # JSON-able
    table = A.format_table(results)
    lines = table.splitlines()
    assert "mean ± std over seeds" in lines[0] and "2 of 2 series scored" in lines[1]
    rows = [line.split()[:2] for line in lines[4:]]
    assert rows == [["hierarchical", "2"], ["adaptive", "2"], ["baseline", "(abs_diff)"]]
    assert "1.5 ± 0.7" in lines[4] and lines[4].rstrip().endswith("1.00")
    assert "custom labels; delay 7" in lines[0] and runs[0]["labels"] == "custom"
    untimed = A.format_table(results, times=False).splitlines()
    assert untimed[2].split() == ["loss", "seeds", "F1", "precision", "recall"]
    assert untimed[4].split()[:2] == ["hierarchical", "2"] and "1.5" not in untimed[4]
    paths = A.write_plots(tmp_path, results, artefacts)
    assert [p.name for p in paths] == ["synthetic_anomaly.png"] and paths[0].stat().st_size > 10_000


def test_delay_option():
    import argparse

    parser = argparse.ArgumentParser()
    A.add_arguments(parser)
    assert parser.parse_args([]).delay == A.DEFAULT_DELAY
    assert parser.parse_args(["--delay", "3"]).delay == 3
    assert parser.parse_args([]).labels == "windows" and parser.parse_args(["--labels", "points"]).labels == "points"
    with pytest.raises(SystemExit):
        parser.parse_args(["--labels", "segments"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--delay", "-1"])
    with pytest.raises(ValueError, match="--delay must be a non-negative integer"):
        A.baseline(A.prepare(synthetic(n=1, length=800)), argparse.Namespace(delay=-1))
    with pytest.raises(ValueError, match="needs --data-dir"):
        A.load("NAB", None, argparse.Namespace(delay=7))
    with pytest.raises(ValueError, match="--labels must be one of windows, points"):
        A.load("NAB", "NAB", argparse.Namespace(delay=7, labels="segments"))


def _nab_folder(root, data):
    """Write ``data`` in NAB's layout under ``root/g``, windows from its labels; the first series repeats a row."""
    import pandas as pd

    windows = {}
    for i, s in enumerate(data.series):
        stamps = pd.date_range("2020-01-01", periods=len(s.values), freq="5min").astype(str).tolist()
        rows = list(zip(stamps, s.values))
        if i == 0:
            rows.insert(11, (stamps[10], 99.0))  # a repeated timestamp: dropped, the first row kept
        (root / "g").mkdir(parents=True, exist_ok=True)
        (root / "g" / f"s{i}.csv").write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in rows))
        edges = np.flatnonzero(np.diff(np.concatenate(([0], s.labels, [0]))))
        windows[f"g/s{i}.csv"] = [[stamps[a], stamps[b - 1]] for a, b in zip(edges[::2], edges[1::2])]
    (root / "combined_windows.json").write_text(json.dumps(windows))


def test_command_on_a_small_folder(tmp_path, capsys, one_thread):
    from arl_fast.cli import main

    _nab_folder(tmp_path / "NAB", synthetic(n=2, length=800))
    out = tmp_path / "out"
    status = main(["compare", "--task", "anomaly", "--data-dir", str(tmp_path / "NAB" / "g"), "--iters", "3",
                   "--repr-dims", "16", "--hidden-dims", "16", "--depth", "3", "--seeds", "2", "--quiet",
                   "--threads", "1", "--delay", "5", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "repeated timestamps, first row kept: g/s0.csv 1" in printed and "delay 5" in printed
    results = json.loads((out / "results.json").read_text())
    for loss in ("hierarchical", "adaptive"):
        entry = results["summary"]["NAB"][loss]
        assert {"train_time_s", "f1", "precision", "recall"} <= set(entry) and entry["n_seeds"] == 2
        assert f"\n{loss} " in printed
    assert results["summary"]["NAB"]["time_ratio"]["hierarchical"] == 1.0
    assert results["baseline"]["NAB"]["data"]["dropped_repeats"] == {"g/s0.csv": 1}
    assert (out / "NAB_anomaly.png").stat().st_size > 10_000
