"""The forecasting protocol: sample construction, the ridge, the scores, and the command end to end."""

import json

import numpy as np
import pandas as pd
import pytest

from arl_fast.cli import main
from arl_fast.data import load_forecast_csv
from arl_fast.tasks import forecasting
from arl_fast.tasks.forecasting import fit_ridge, forecast_scores, prediction_samples

TINY = ["--depth", "1", "--hidden-dims", "8", "--repr-dims", "8", "--device", "cpu", "--quiet", "--threads", "1"]


def write_csv(path, n=1200, columns=("load", "OT"), seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n, freq="h")})
    for i, name in enumerate(columns):
        frame[name] = np.sin(2 * np.pi * t / 24 + i) * (i + 1) + 0.1 * rng.normal(size=n) + 10 * i
    frame.to_csv(path, index=False)
    return path


def test_samples_pair_the_representation_at_t_with_the_next_h_values():
    values = np.arange(10, dtype=float).reshape(1, 10, 1) * np.array([1.0, -1.0])  # two targets
    features = np.arange(10, dtype=float).reshape(1, 10, 1)  # "representation" at t = t
    inputs, targets = prediction_samples(features, values, horizon=3)
    assert inputs.shape == (7, 1) and targets.shape == (7, 6)
    for row, t in enumerate(inputs[:, 0].astype(int)):
        expected = np.stack([values[0, t + 1 : t + 4, 0], values[0, t + 1 : t + 4, 1]], axis=1).ravel()
        np.testing.assert_array_equal(targets[row], expected)  # step-major: (t+1: both targets), (t+2: ...), ...
    dropped, _ = prediction_samples(features, values, horizon=3, drop=2)
    np.testing.assert_array_equal(dropped[:, 0], [2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="horizon 10 needs a slice longer than 10 steps"):
        prediction_samples(features, values, horizon=10)


def test_ridge_on_true_lagged_values_recovers_a_noiseless_sine():
    t = np.arange(3000)
    series = np.sin(2 * np.pi * t / 37.0)[None, :, None]
    lags = 4  # a sine obeys x[t+1] = 2 cos(w) x[t] - x[t-1]: two lags suffice; four leave room
    features = np.stack([np.roll(series[0, :, 0], k) for k in range(lags)], axis=1)[None]
    train, valid, test = slice(lags, 2000), slice(2000, 2500), slice(2500, 3000)
    split = lambda part: (features[:, part], series[:, part])  # noqa: E731
    horizon = 24
    ridge, alpha = fit_ridge(*prediction_samples(*split(train), horizon), *prediction_samples(*split(valid), horizon),
                             alphas=(1e-8, 1e-4, 1.0))
    test_x, test_y = prediction_samples(*split(test), horizon)
    assert alpha == 1e-8
    assert np.mean((ridge.predict(test_x) - test_y) ** 2) < 1e-8
    # with noise in place of the lags nothing is predictable: MSE about the series' variance (0.5)
    noise = np.random.default_rng(0).normal(size=features.shape)
    ridge, _ = fit_ridge(*prediction_samples(noise[:, train], series[:, train], horizon),
                         *prediction_samples(noise[:, valid], series[:, valid], horizon))
    assert np.mean((ridge.predict(prediction_samples(noise[:, test], series[:, test], horizon)[0]) - test_y) ** 2) > 0.4


def test_scores_in_both_scales_from_perfect_features(tmp_path):
    data = load_forecast_csv(write_csv(tmp_path / "toy.csv"), horizons=[4, 8])
    values = data.data[..., data.n_covariates :]
    # features that hold the future itself: the ridge predicts it almost exactly, in both scales
    future = np.concatenate([np.roll(values, -k, axis=1) for k in range(1, 9)], axis=2)
    metrics, predictions = forecast_scores(future, data, drop=0)
    assert set(metrics["mse"]) == {4, 8} and predictions[8].shape[1:] == (8, 2)
    for h in (4, 8):
        assert metrics["mse"][h] < 1e-3 and metrics["mae"][h] < 3e-2
        scale = data.scaler.scale_ ** 2
        assert metrics["mse_raw"][h] < 1e-3 * scale.max() and metrics["alpha"][h] in forecasting.RIDGE_ALPHAS
    with pytest.raises(ValueError, match="leaves no sample"):
        forecast_scores(future, data, drop=10_000)


def test_forecasting_compare_end_to_end(tmp_path, capsys):
    write_csv(tmp_path / "toy.csv")
    out = tmp_path / "run"
    argv = ["compare", "--task", "forecasting", "--dataset", "toy", "--data-dir", str(tmp_path), "--iters", "3",
            "--horizons", "4,12", "--seeds", "2", "--losses", "hierarchical", "uniform", "--out", str(out), *TINY]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "forecasting" and results["lengths"] == {"toy": 720}
    assert len(results["runs"]) == 4
    for run in results["runs"]:
        assert set(run["mse"]) == {"4", "12"} and run["iters"] == 3 and run["encode_time_s"] > 0
    summary = results["summary"]["toy"]
    for loss in ("hierarchical", "uniform"):
        runs = [r for r in results["runs"] if r["loss"] == loss]
        assert summary[loss]["mse"]["4"] == pytest.approx(np.mean([r["mse"]["4"] for r in runs]))
        assert summary[loss]["mse_std"]["12"] == pytest.approx(np.std([r["mse"]["12"] for r in runs], ddof=1))
    assert summary["time_ratio"]["hierarchical"] == 1.0
    assert summary["time_ratio"]["uniform"] == pytest.approx(
        summary["uniform"]["train_time_s"] / summary["hierarchical"]["train_time_s"])
    printed = capsys.readouterr().out
    assert "MSE@4" in printed and "MAE@12" in printed and "uniform" in printed
    assert (out / "toy_mse.png").is_file() and (out / "toy_forecast.png").is_file()

    univariate = tmp_path / "uni"
    assert main(["compare", "--task", "forecasting", "--dataset", str(tmp_path / "toy.csv"), "--univariate",
                 "--iters", "1", "--horizons", "4", "--losses", "hierarchical", "--out", str(univariate), *TINY]) == 0
    assert json.loads((univariate / "results.json").read_text())["runs"][0]["mse"].keys() == {"4"}


def test_forecasting_bad_arguments(tmp_path, capsys):
    write_csv(tmp_path / "toy.csv")
    base = ["compare", "--task", "forecasting", "--iters", "1", "--out", str(tmp_path / "x"), *TINY]
    assert main([*base, "--dataset", "missing", "--data-dir", str(tmp_path)]) == 2
    assert "forecasting dataset 'missing' not found" in capsys.readouterr().err
    assert main([*base, "--dataset", "toy", "--data-dir", str(tmp_path), "--target", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main([*base, "--dataset", "toy", "--data-dir", str(tmp_path), "--univariate", "--target", "load"]) == 2
    assert "either --univariate or --target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--dataset", "toy", "--horizons", "0,4"])
