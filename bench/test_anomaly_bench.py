"""bench/anomaly.py: resuming, the atomic results file, and the report that pools quality over machines but
never times, on made-up runs (no training)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anomaly as bench  # noqa: E402

SETUP = {"dataset": "NAB", "iters": 600, "delay": 7, "repr_dims": 320, "hidden_dims": 64, "depth": 10}


def run(loss, seed, labels, cpu, train, f1, **changes):
    return {**SETUP, "loss": loss, "seed": seed, "labels": labels, "cpu": cpu, "threads": 1, "train_time_s": train,
            "encode_time_s": train / 10, "f1": f1, "precision": f1, "recall": f1, **changes}


def results(runs):
    base = {"name": "abs_diff", "f1": 0.1, "precision": 0.1, "recall": 0.1, "delay": 7,
            "data": {"series": 42, "scored": 36, "unlabelled": 6, "dropped_repeats": {}}}
    return {"command": "python bench/anomaly.py", "setup": dict(SETUP), "losses": ["hierarchical", "adaptive"],
            "labels": ["windows", "points"], "runs": runs,
            "baseline": {f"NAB ({labels})": {**base, "labels": labels} for labels in ("windows", "points")}}


@pytest.fixture
def two_machines():
    runs = []
    for seed, cpu, scale in ((0, "AMD EPYC", 1.0), (1, "AMD EPYC", 1.2), (2, "Intel Xeon", 3.0)):
        for labels, f1 in (("windows", 0.1 + seed / 10), ("points", 0.5)):
            runs.append(run("hierarchical", seed, labels, cpu, 100 * scale, f1))
            runs.append(run("adaptive", seed, labels, cpu, 60 * scale, f1))
    runs.append(run("hierarchical", 0, "windows", "AMD EPYC", 10.0, 0.9, iters=30))  # another setup: not counted
    return results(runs)


def test_times_are_per_machine_and_each_fit_counts_once(two_machines):
    times = bench.summarised(two_machines)["times"]
    assert sorted(times) == ["AMD EPYC, 1 thread(s)", "Intel Xeon, 1 thread(s)"]
    amd, intel = times["AMD EPYC, 1 thread(s)"], times["Intel Xeon, 1 thread(s)"]
    assert amd["hierarchical"]["n_fits"] == 2 and amd["hierarchical"]["seeds"] == [0, 1]  # windows + points: 1 fit
    assert amd["hierarchical"]["train_time_s"] == pytest.approx(110.0)
    assert amd["adaptive"]["time_ratio"] == pytest.approx(66.0 / 110.0)
    assert intel["hierarchical"]["train_time_s"] == pytest.approx(300.0) and intel["hierarchical"]["n_fits"] == 1
    assert intel["adaptive"]["time_ratio"] == pytest.approx(0.6)


def test_quality_pools_machines_without_times(two_machines):
    summary = bench.summarised(two_machines)["summary"]
    assert sorted(summary) == ["NAB (points)", "NAB (windows)"]
    windows = summary["NAB (windows)"]["hierarchical"]
    assert windows["n_seeds"] == 3 and windows["f1"] == pytest.approx(0.2)  # seeds 0-2, the 30-iteration run left out
    assert not any(name.startswith(("train_time", "encode_time")) for name in windows)
    assert "time_ratio" not in summary["NAB (windows)"]


def test_the_table_gives_one_time_table_per_machine(tmp_path, two_machines, capsys):
    bench.write_table(tmp_path, two_machines)
    table = (tmp_path / "table.txt").read_text()
    assert table.count("times on ") == 2 and "train time (s)  time / hier." in table
    quality = table.split("times on ")[0]
    assert "NAB (windows)" in quality and "NAB (points)" in quality and "train time" not in quality


def test_results_are_replaced_atomically(tmp_path):
    path = tmp_path / "results.json"
    bench.write_json(path, {"runs": [1]})
    with pytest.raises(TypeError):
        bench.write_json(path, {"runs": [object()]})  # fails while writing: the file on disk is untouched
    assert json.loads(path.read_text()) == {"runs": [1]} and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    bench.write_json(path, {"runs": [1, 2]})
    assert json.loads(path.read_text()) == {"runs": [1, 2]}
