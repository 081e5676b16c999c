import gzip

import numpy as np
import pandas as pd
import pytest

import arl_fast
from arl_fast.data import ForecastDataset, load_forecast_csv

# Dates with their calendar features worked out by hand: minute, hour, day of week (Monday 0),
# day of month, day of year, month, ISO week.  They cross a leap day, two new years and ISO week 53.
KNOWN_DATES = [
    ("2016-02-28 23:15:00", [15, 23, 6, 28, 59, 2, 8]),
    ("2016-02-29 06:30:00", [30, 6, 0, 29, 60, 2, 9]),
    ("2016-12-31 12:00:00", [0, 12, 5, 31, 366, 12, 52]),
    ("2017-01-01 00:45:00", [45, 0, 6, 1, 1, 1, 52]),
    ("2020-12-31 18:05:00", [5, 18, 3, 31, 366, 12, 53]),
    ("2021-01-01 00:00:00", [0, 0, 4, 1, 1, 1, 53]),
    ("2021-01-04 09:59:00", [59, 9, 0, 4, 4, 1, 1]),
    ("2021-03-15 13:45:00", [45, 13, 0, 15, 74, 3, 11]),
]


def write_csv(path, n=None, *, dates=None, freq="h", columns=None, date_column="date"):
    """A CSV at ``path`` with a date column and the given columns (default: two ramps and a sine)."""
    if dates is None:
        dates = pd.date_range("2016-07-01", periods=n, freq=freq).strftime("%Y-%m-%d %H:%M:%S")
    n = len(dates)
    if columns is None:
        t = np.arange(n, dtype=np.float64)
        columns = {"a": t, "b": 5.0 - 0.5 * t, "OT": np.sin(t / 7.0)}
    frame = pd.DataFrame({date_column: list(dates), **columns})
    frame.to_csv(path, index=False)
    return path


def zscore_on(values, train):
    """(values - mean) / std over the rows ``train``, a zero std taken as 1."""
    mean, std = values[train].mean(0), values[train].std(0)
    return (values - mean) / np.where(std == 0, 1.0, std)


def test_exported_from_the_package():
    assert arl_fast.load_forecast_csv is load_forecast_csv
    assert "load_forecast_csv" in arl_fast.__all__


def test_calendar_covariates_of_known_dates(tmp_path):
    dates = [d for d, _ in KNOWN_DATES]
    raw = np.array([f for _, f in KNOWN_DATES], dtype=np.float64)
    path = write_csv(tmp_path / "cal.csv", dates=dates, columns={"x": np.arange(8.0)})
    ds = load_forecast_csv(path, splits=(4, 2, 2), horizons=[1])
    assert ds.n_covariates == 7 and ds.data.shape == (1, 8, 8) and ds.data.dtype == np.float32
    np.testing.assert_allclose(ds.data[0, :, :7], zscore_on(raw, slice(0, 4)), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ds.dates, np.array(dates, dtype="datetime64[ns]"))
    assert ds.dates.dtype == np.dtype("datetime64[ns]")


def test_covariate_constant_on_the_training_slice_stays_finite(tmp_path):
    # Hourly steps from 2016-01-31 00:00: minute is always 0, the month is 1 during training and 2 after.
    path = write_csv(
        tmp_path / "const.csv",
        dates=pd.date_range("2016-01-31", periods=48, freq="h").strftime("%Y-%m-%d %H:%M:%S"),
        columns={"x": np.arange(48.0), "flat": np.full(48, 3.0)},
    )
    ds = load_forecast_csv(path, splits=(24, 12, 12), horizons=[1])
    assert np.isfinite(ds.data).all()
    minute, month = ds.data[0, :, 0], ds.data[0, :, 5]
    np.testing.assert_array_equal(minute, 0.0)
    np.testing.assert_array_equal(month[:24], 0.0)  # constant on the training slice: centred, unit scale
    np.testing.assert_array_equal(month[24:], 1.0)
    np.testing.assert_array_equal(ds.data[0, :, 8], 0.0)  # the flat target too


def test_targets_scaled_on_the_training_slice(tmp_path):
    path = write_csv(tmp_path / "ramp.csv", 100)
    ds = load_forecast_csv(path, splits=(60, 20, 20), horizons=[5])
    original = pd.read_csv(path)[["a", "b", "OT"]].to_numpy()
    targets = ds.data[0, :, ds.n_covariates :]
    np.testing.assert_allclose(targets, zscore_on(original, slice(0, 60)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets[:60].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(targets[:60].std(0), 1.0, atol=1e-5)
    # The ramps keep rising past the training slice: valid and test are not standardised on their own.
    assert targets[60:80, 0].mean() > 1.5 and targets[80:, 0].mean() > 2.5
    np.testing.assert_allclose(ds.scaler.inverse_transform(targets), original, rtol=1e-5, atol=1e-4)
    covs = ds.data[0, :, :7]
    np.testing.assert_allclose(covs[:60].mean(0), 0.0, atol=1e-5)


def test_multivariate_univariate_and_a_list_of_targets(tmp_path):
    path = write_csv(tmp_path / "multi.csv", 50)
    kw = dict(splits=(30, 10, 10), horizons=[2])
    multi = load_forecast_csv(path, **kw)
    assert isinstance(multi, ForecastDataset) and multi.name == "multi"
    assert multi.columns == ["a", "b", "OT"] and multi.data.shape == (1, 50, 10)
    uni = load_forecast_csv(path, "OT", **kw)
    assert uni.columns == ["OT"] and uni.data.shape == (1, 50, 8)
    np.testing.assert_array_equal(uni.data[0, :, 7], multi.data[0, :, 9])
    np.testing.assert_array_equal(uni.data[0, :, :7], multi.data[0, :, :7])
    picked = load_forecast_csv(path, ["OT", "a"], **kw)
    assert picked.columns == ["OT", "a"]
    np.testing.assert_array_equal(picked.data[0, :, 7:], multi.data[0, :, [9, 7]].T)
    bare = load_forecast_csv(path, "OT", covariates=False, **kw)
    assert bare.n_covariates == 0 and bare.data.shape == (1, 50, 1)
    np.testing.assert_array_equal(bare.data[0, :, 0], uni.data[0, :, 7])


def test_another_date_column_and_a_compressed_file(tmp_path):
    path = write_csv(tmp_path / "ts.csv", 20, date_column="timestamp")
    ds = load_forecast_csv(path, "a", date_column="timestamp", splits=(10, 5, 5), horizons=[1])
    assert ds.data.shape == (1, 20, 8)
    gz = tmp_path / "ETTh9.csv.gz"
    with open(path, "rb") as src, gzip.open(gz, "wb") as dst:
        dst.write(src.read())
    zipped = load_forecast_csv(gz, "a", date_column="timestamp", splits=(10, 5, 5), horizons=[1])
    assert zipped.name == "ETTh9"
    np.testing.assert_array_equal(zipped.data, ds.data)


def test_zone_aware_dates_keep_their_wall_clock_time(tmp_path):
    dates = [f"2021-03-15T{h:02d}:00:00+02:00" for h in range(10)]
    ds = load_forecast_csv(write_csv(tmp_path / "tz.csv", dates=dates), splits=(6, 2, 2), horizons=[1])
    assert ds.dates[0] == np.datetime64("2021-03-15T00:00:00", "ns")


def test_etth_rule_keeps_the_rows_after_the_test_slice(tmp_path):
    path = write_csv(tmp_path / "ETTh_test.csv", 14400 + 100, columns={"OT": np.arange(14500.0)})
    ds = load_forecast_csv(path)
    assert (ds.train_slice, ds.valid_slice, ds.test_slice) == (slice(0, 8640), slice(8640, 11520), slice(11520, 14400))
    assert ds.data.shape == (1, 14500, 8) and len(ds.dates) == 14500
    assert ds.horizons == [24, 48, 168, 336, 720]
    short = write_csv(tmp_path / "ETTh_short.csv", 14399, columns={"OT": np.arange(14399.0)})
    with pytest.raises(ValueError, match=r"ETTh_short\.csv.*14399 rows.*14400"):
        load_forecast_csv(short)


def test_ettm_rule_in_quarter_hours(tmp_path):
    n = 4 * 14400
    path = write_csv(tmp_path / "ETTm_test.csv", n, freq="15min", columns={"OT": np.arange(float(n))})
    ds = load_forecast_csv(path)
    assert (ds.train_slice, ds.valid_slice, ds.test_slice) == (slice(0, 34560), slice(34560, 46080), slice(46080, n))
    assert ds.horizons == [24, 48, 96, 288, 672]
    short = write_csv(tmp_path / "ETTm_short.csv", 14400, freq="15min", columns={"OT": np.arange(14400.0)})
    with pytest.raises(ValueError, match=r"ETTm_short\.csv.*14400 rows.*57600"):
        load_forecast_csv(short)


def test_fraction_rule_and_default_horizons(tmp_path):
    ds = load_forecast_csv(write_csv(tmp_path / "weather.csv", 3400))
    assert (ds.train_slice, ds.valid_slice, ds.test_slice) == (slice(0, 2040), slice(2040, 2720), slice(2720, 3400))
    assert ds.horizons == [24, 48, 96, 288, 672]
    odd = load_forecast_csv(write_csv(tmp_path / "odd.csv", 1001), horizons=[1])
    assert (odd.train_slice, odd.valid_slice, odd.test_slice) == (slice(0, 600), slice(600, 800), slice(800, 1001))
    elec = load_forecast_csv(write_csv(tmp_path / "electricity.csv", 3700, columns={"MT_001": np.arange(3700.0)}))
    assert elec.horizons == [24, 48, 168, 336, 720]


@pytest.mark.parametrize("n", [997, 1001, 1234, 1500])
def test_fraction_override_matches_the_default_rule(tmp_path, n):
    path = write_csv(tmp_path / f"s{n}.csv", n)
    default = load_forecast_csv(path, horizons=[1])
    override = load_forecast_csv(path, splits=(0.6, 0.2, 0.2), horizons=[1])
    assert default[2:5] == override[2:5]
    assert default.test_slice == slice(int(0.8 * n), n)


def test_split_overrides(tmp_path):
    path = write_csv(tmp_path / "ETTh1.csv", 100)  # the override wins over the name's rule
    counts = load_forecast_csv(path, splits=(50, 20, 10), horizons=[3, 1])
    assert (counts.train_slice, counts.valid_slice, counts.test_slice) == (slice(0, 50), slice(50, 70), slice(70, 80))
    assert counts.data.shape[1] == 100 and counts.horizons == [3, 1]
    np.testing.assert_allclose(counts.data[0, :50, 7:].mean(0), 0.0, atol=1e-5)
    fractions = load_forecast_csv(path, splits=[0.5, 0.25, 0.125], horizons=[1])
    assert (fractions.train_slice, fractions.valid_slice, fractions.test_slice) == (
        slice(0, 50),
        slice(50, 75),
        slice(75, 87),
    )
    numpy_ints = load_forecast_csv(path, splits=tuple(np.array([50, 20, 10])), horizons=(np.int64(3),))
    assert numpy_ints.test_slice == slice(70, 80) and numpy_ints.horizons == [3]


def test_horizon_must_fit_the_validation_and_test_slices(tmp_path):
    path = write_csv(tmp_path / "h.csv", 100)
    assert load_forecast_csv(path, splits=(60, 20, 15), horizons=[14]).horizons == [14]
    with pytest.raises(ValueError, match=r"horizon 15 .*test slice of 15 steps"):
        load_forecast_csv(path, splits=(60, 20, 15), horizons=[14, 15])
    with pytest.raises(ValueError, match=r"horizon 30 .*validation slice of 20 steps"):
        load_forecast_csv(path, splits=(50, 20, 30), horizons=[30])
    with pytest.raises(ValueError, match=r"h\.csv.*horizon 24 \(default horizons"):
        load_forecast_csv(path)


@pytest.mark.parametrize(
    "horizons, error, message",
    [
        ([], TypeError, "horizons"),
        (24, TypeError, "horizons"),
        ("24", TypeError, "horizons"),
        ([1.5], TypeError, "horizons"),
        ([True], TypeError, "horizons"),
        ([0], ValueError, "horizons must be positive"),
        ([4, -1], ValueError, "horizons must be positive"),
        ([2, 2], ValueError, "horizons must be distinct"),
    ],
)
def test_bad_horizons(tmp_path, horizons, error, message):
    with pytest.raises(error, match=message):
        load_forecast_csv(write_csv(tmp_path / "x.csv", 100), horizons=horizons)


@pytest.mark.parametrize(
    "splits, error, message",
    [
        (0.6, TypeError, "splits"),
        ((60, 20), TypeError, "splits"),
        ((60, 20, 10, 10), TypeError, "splits"),
        ((60, 0.2, 10), TypeError, "splits"),
        (("60", "20", "20"), TypeError, "splits"),
        ((True, 1, 1), TypeError, "splits"),
        ((60, 0, 20), ValueError, "positive"),
        ((60, 20, -5), ValueError, "positive"),
        ((0.0, 0.5, 0.5), ValueError, r"in \(0, 1\)"),
        ((1.0, 0.1, 0.1), ValueError, r"in \(0, 1\)"),
        ((0.6, 0.3, 0.2), ValueError, "sum to at most 1"),
        ((0.5, 0.25, 0.001), ValueError, r"x\.csv.*100 rows.*empty slice"),
        ((60, 30, 20), ValueError, r"x\.csv.*100 rows.*test slice at 110"),
    ],
)
def test_bad_splits(tmp_path, splits, error, message):
    with pytest.raises(error, match=message):
        load_forecast_csv(write_csv(tmp_path / "x.csv", 100), splits=splits, horizons=[1])


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_forecast_csv(tmp_path / "nowhere.csv")
    with pytest.raises(FileNotFoundError, match="not a file"):
        load_forecast_csv(tmp_path)
    path = write_csv(tmp_path / "x.csv", 20)
    with pytest.raises(TypeError, match="path"):
        load_forecast_csv(3)
    with pytest.raises(TypeError, match="date_column"):
        load_forecast_csv(path, date_column=0)
    with pytest.raises(TypeError, match="covariates"):
        load_forecast_csv(path, covariates=1)
    for target in (3, [], ["a", 1], {"a"}):
        with pytest.raises(TypeError, match="target"):
            load_forecast_csv(path, target, splits=(10, 5, 5), horizons=[1])
    with pytest.raises(ValueError, match="more than once"):
        load_forecast_csv(path, ["a", "a"], splits=(10, 5, 5), horizons=[1])


def test_unreadable_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv.*cannot be read"):
        load_forecast_csv(empty)
    header = tmp_path / "header.csv"
    header.write_text("date,a\n")
    with pytest.raises(ValueError, match=r"header\.csv.*no rows"):
        load_forecast_csv(header)
    only_dates = write_csv(tmp_path / "dates.csv", 10, columns={})
    with pytest.raises(ValueError, match=r"dates\.csv.*no column besides the date column 'date'"):
        load_forecast_csv(only_dates)


def test_missing_date_column(tmp_path):
    path = write_csv(tmp_path / "nodate.csv", 20, date_column="time")
    with pytest.raises(ValueError, match=r"nodate\.csv.*no date column 'date'.*\['time', 'a', 'b', 'OT'\]"):
        load_forecast_csv(path)


def test_unparsable_and_missing_dates(tmp_path):
    dates = list(pd.date_range("2016-07-01", periods=20, freq="h").strftime("%Y-%m-%d %H:%M:%S"))
    dates[7] = "not a date"
    with pytest.raises(ValueError, match=r"bad\.csv.*'date'.*'not a date'.*row 7"):
        load_forecast_csv(write_csv(tmp_path / "bad.csv", dates=dates))
    dates[7] = ""
    with pytest.raises(ValueError, match=r"hole\.csv.*'date' is empty.*row 7"):
        load_forecast_csv(write_csv(tmp_path / "hole.csv", dates=dates))


@pytest.mark.parametrize("row, value", [(6, 5), (5, 3), (19, 0)])
def test_dates_must_strictly_increase(tmp_path, row, value):
    stamps = pd.date_range("2016-07-01", periods=20, freq="h")
    dates = list(stamps.strftime("%Y-%m-%d %H:%M:%S"))
    dates[row] = dates[value]
    with pytest.raises(ValueError, match=rf"order\.csv.*'date' must be strictly increasing.*row {row}"):
        load_forecast_csv(write_csv(tmp_path / "order.csv", dates=dates), splits=(10, 5, 5), horizons=[1])


def test_missing_target_column(tmp_path):
    path = write_csv(tmp_path / "cols.csv", 20)
    with pytest.raises(ValueError, match=r"cols\.csv.*no column 'OT2'.*\['date', 'a', 'b', 'OT'\]"):
        load_forecast_csv(path, "OT2")
    with pytest.raises(ValueError, match=r"no column 'zz'"):
        load_forecast_csv(path, ["a", "zz"])
    with pytest.raises(ValueError, match=r"target 'date' is the date column"):
        load_forecast_csv(path, "date")


def test_non_numeric_target(tmp_path):
    text = np.arange(20.0).astype(object)
    text[3] = "n/a?"
    path = write_csv(tmp_path / "text.csv", 20, columns={"a": np.arange(20.0), "label": text})
    for target in (None, "label", ["a", "label"]):
        with pytest.raises(ValueError, match=r"text\.csv.*column 'label' is not numeric.*row 3.*'n/a\?'"):
            load_forecast_csv(path, target, splits=(10, 5, 5), horizons=[1])
    assert load_forecast_csv(path, "a", splits=(10, 5, 5), horizons=[1]).columns == ["a"]
    flags = write_csv(tmp_path / "flags.csv", 20, columns={"on": np.arange(20) % 2 == 0})
    with pytest.raises(ValueError, match=r"flags\.csv.*column 'on' is not numeric.*bool"):
        load_forecast_csv(flags, splits=(10, 5, 5), horizons=[1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_missing_or_infinite_target_values(tmp_path, bad):
    values = np.arange(20.0)
    values[12] = bad
    path = write_csv(tmp_path / "gaps.csv", 20, columns={"a": np.arange(20.0), "b": values})
    with pytest.raises(ValueError, match=r"gaps\.csv.*column 'b' has a missing or infinite value.*row 12"):
        load_forecast_csv(path, splits=(10, 5, 5), horizons=[1])
    assert load_forecast_csv(path, "a", splits=(10, 5, 5), horizons=[1]).data.shape == (1, 20, 8)
