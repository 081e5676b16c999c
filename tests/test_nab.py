"""The NAB loader on small folders written here, its rule for repeated timestamps, and its bad inputs."""

import json

import numpy as np
import pytest

from arl_fast.data import load_nab
from arl_fast.data.nab import anomaly_dataset


def _csv(path, stamps, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(stamps, values)))


def _stamps(n, start="2020-01-01 00:00:00", step="5min"):
    import pandas as pd

    return [str(t) for t in pd.date_range(start, periods=n, freq=step)]


@pytest.fixture
def nab(tmp_path):
    """Two groups: one series with two windows, one with none, one whose rows repeat a timestamp."""
    root = tmp_path / "NAB"
    _csv(root / "groupA" / "a.csv", _stamps(20), range(20))
    _csv(root / "groupA" / "quiet.csv", _stamps(10), [1.0] * 10)
    stamps = _stamps(12)
    _csv(root / "groupB" / "dup.csv", stamps[:6] + [stamps[5], stamps[5]] + stamps[6:], range(14))
    windows = {
        "groupA/a.csv": [["2020-01-01 00:10:00.000000", "2020-01-01 00:20:00.000000"],
                         ["2020-01-01 01:20:00", "2020-01-01 01:35:00"]],
        "groupA/quiet.csv": [],
        "groupB/dup.csv": [[stamps[6], stamps[7]]],
    }
    (root / "combined_windows.json").write_text(json.dumps(windows))
    return root


def test_windows_label_points_inclusive(nab):
    data = load_nab(nab)
    series = {s.name: s for s in data.series}
    assert sorted(series) == ["groupA/a.csv", "groupA/quiet.csv", "groupB/dup.csv"]
    a = series["groupA/a.csv"]
    np.testing.assert_array_equal(np.flatnonzero(a.labels), [2, 3, 4, 16, 17, 18, 19])
    np.testing.assert_array_equal(a.values, np.arange(20.0))
    assert a.labelled and a.dropped == 0
    assert np.all(np.diff(a.timestamps) == 300 * 10**9)


def test_series_without_windows_train_only(nab):
    data = load_nab(nab)
    assert data.n_unlabelled == 1
    assert [s.name for s in data.scored] == ["groupA/a.csv", "groupB/dup.csv"]
    assert "3 series, 2 scored, 1 without labelled anomalies" in data.describe()


def test_repeated_timestamps_keep_the_first_row(nab):
    dup = {s.name: s for s in load_nab(nab).series}["groupB/dup.csv"]
    assert dup.dropped == 2 and len(dup.values) == 12
    # rows 6 and 7 repeated row 5's timestamp: dropped, so value 5 stays and 6, 7 go
    np.testing.assert_array_equal(dup.values, [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13])
    np.testing.assert_array_equal(np.flatnonzero(dup.labels), [6, 7])
    assert load_nab(nab).dropped == {"groupB/dup.csv": 2}
    assert "groupB/dup.csv 2 dropped" in load_nab(nab).describe()


def test_a_group_folder_selects_that_group(nab):
    data = load_nab(nab / "groupA")
    assert data.name == "groupA"
    assert [s.name for s in data.series] == ["groupA/a.csv", "groupA/quiet.csv"]


def test_timestamps_out_of_order_name_the_file(nab):
    stamps = _stamps(8)
    _csv(nab / "groupB" / "dup.csv", stamps[:4] + ["2019-12-31 23:00:00"] + stamps[4:], range(9))
    with pytest.raises(ValueError, match=r"dup\.csv: timestamps go backwards at row 5"):
        load_nab(nab)


def test_windows_file_naming_a_missing_series(nab):
    windows = json.loads((nab / "combined_windows.json").read_text())
    windows["groupB/gone.csv"] = []
    (nab / "combined_windows.json").write_text(json.dumps(windows))
    with pytest.raises(ValueError, match=r"combined_windows\.json names 1 series not found.*groupB/gone\.csv"):
        load_nab(nab)


def test_csv_without_an_entry_names_the_file(nab):
    _csv(nab / "groupA" / "extra.csv", _stamps(5), range(5))
    with pytest.raises(ValueError, match=r"extra\.csv: no entry in .*combined_windows\.json"):
        load_nab(nab)


@pytest.mark.parametrize("text, message", [
    ("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,oops\n", r"value on row 2 is not a number"),
    ("time,val\n1,2\n", r"no column timestamp, value"),
    ("timestamp,value\nnot a date,1\n2020-01-01,2\n", r"timestamps are not dates"),
    ("timestamp,value\n2020-01-01 00:00:00,1\n", r"at least 2 points"),
])
def test_unreadable_files_name_the_file(nab, text, message):
    (nab / "groupA" / "a.csv").write_text(text)
    with pytest.raises(ValueError, match=r"groupA/a\.csv.*" + message):
        load_nab(nab)


def test_bad_windows_file(nab):
    (nab / "combined_windows.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"combined_windows\.json: cannot read it as JSON"):
        load_nab(nab)
    (nab / "combined_windows.json").write_text(json.dumps({"groupA/a.csv": [["2020-01-02", "2020-01-01"]],
                                                           "groupA/quiet.csv": [], "groupB/dup.csv": []}))
    with pytest.raises(ValueError, match=r"groupA/a\.csv.*ends before it starts"):
        load_nab(nab)


def test_missing_folder_or_windows(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_nab(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no combined_windows.json"):
        load_nab(tmp_path / "empty")


def _points(nab, entries):
    (nab / "combined_labels.json").write_text(json.dumps(entries))


def test_point_labels_mark_one_point_per_anomaly(nab):
    stamps = _stamps(12)
    _points(nab, {"groupA/a.csv": ["2020-01-01 00:10:00", "2020-01-01 01:25:00"], "groupA/quiet.csv": [],
                  "groupB/dup.csv": [stamps[5]]})
    data = load_nab(nab, labels="points")
    series = {s.name: s for s in data.series}
    assert data.labels == "points" and load_nab(nab).labels == "windows"
    np.testing.assert_array_equal(np.flatnonzero(series["groupA/a.csv"].labels), [2, 17])
    assert not series["groupA/quiet.csv"].labelled and series["groupA/a.csv"].labelled
    # the labelled timestamp repeats in the file: the row kept (the first) carries the label
    np.testing.assert_array_equal(np.flatnonzero(series["groupB/dup.csv"].labels), [5])
    np.testing.assert_array_equal(series["groupB/dup.csv"].values, load_nab(nab).series[2].values)


@pytest.mark.parametrize("entry, message", [
    (["2020-01-01 00:12:00"], r"label '2020-01-01 00:12:00' is not a timestamp of the series"),
    (["soon"], r"label 'soon' is not a date"),
    ("2020-01-01 00:10:00", r"the labels must be a list of timestamps"),
])
def test_bad_point_labels_name_the_file(nab, entry, message):
    _points(nab, {"groupA/a.csv": entry, "groupA/quiet.csv": [], "groupB/dup.csv": []})
    with pytest.raises(ValueError, match=r"combined_labels\.json \(groupA/a\.csv\): " + message):
        load_nab(nab, labels="points")


def test_label_kinds(nab):
    with pytest.raises(ValueError, match="labels must be one of 'windows', 'points', got 'segments'"):
        load_nab(nab, labels="segments")
    with pytest.raises(FileNotFoundError, match="no combined_labels.json"):
        load_nab(nab, labels="points")  # the fixture has windows only


def test_users_arrays():
    rng = np.random.default_rng(0)
    data = anomaly_dataset([rng.normal(size=30), rng.normal(size=20)],
                           [np.r_[np.zeros(25), np.ones(5)], np.zeros(20)],
                           timestamps=[np.r_[np.arange(10), 9, np.arange(10, 29)], None], names=["x", "y"])
    x, y = data.series
    assert x.dropped == 1 and len(x.values) == 29 and x.labels.sum() == 5
    assert x.labelled and not y.labelled and y.timestamps is None
    assert [s.name for s in data.scored] == ["x"] and data.labels == "custom"


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(values=[np.zeros(5)], labels=[np.zeros(4)]), ValueError, r"series_0: labels have shape \(4,\)"),
    (dict(values=[np.zeros(5)], labels=[np.full(5, 2)]), ValueError, "labels must be 0 or 1"),
    (dict(values=[np.zeros((5, 2))], labels=[np.zeros(5)]), ValueError, "1-D array"),
    (dict(values=[np.r_[0.0, np.nan, 1.0]], labels=[np.zeros(3)]), ValueError, "NaN or infinite"),
    (dict(values=[np.zeros(3)], labels=[np.zeros(3)], timestamps=[np.array([0, 2, 1])]), ValueError, "backwards"),
    (dict(values=[np.zeros(3)], labels=[np.zeros(3)], timestamps=[np.arange(4)]), ValueError, "4 timestamps for 3"),
    (dict(values=np.zeros(3), labels=[np.zeros(3)]), TypeError, "list of 1-D arrays"),
    (dict(values=[np.zeros(3)], labels=[np.zeros(3), np.zeros(3)]), ValueError, "list of 1 arrays"),
])
def test_users_arrays_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        anomaly_dataset(**kwargs)
