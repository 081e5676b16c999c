"""bench/ablation.py: the plan, resuming, and the report's statistics, on made-up run files (no training)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablation  # noqa: E402


def fake_run(out, variant, seed, accuracy, time_s, dataset="ACSF1", setting="paper"):
    record = {
        "setting": setting, "dataset": dataset, "variant": variant, "seed": seed, "accuracy": accuracy,
        "train_time_s": time_s, "epochs": 20, "iters": 240, "length": 1460,
        "config": ablation.run_config(setting, dataset, None, "reference", 2, 1), "backend": "reference", "cpu": "test CPU",
        "torch_threads": 2, "torch": "x", "python": "3", "command": "bench/ablation.py", "finished": "now",
        "loss_log": [], "adaptive_history": None,
    }
    ablation.write_atomically(ablation.run_path(out, setting, dataset, variant, seed), record)


def test_plan_puts_seeds_outermost_and_filters_datasets():
    runs = ablation.plan(["paper"], None, ["hierarchical", "uniform"], 2)
    assert [r[0] for r in runs] == sorted(r[0] for r in runs) and len(runs) == 2 * 5 * 2
    assert runs[:2] == [(0, "paper", "ACSF1", "hierarchical"), (0, "paper", "ACSF1", "uniform")]
    assert {r[2] for r in ablation.plan(["paper"], ["MotorImagery"], ["uniform"], 1)} == {"MotorImagery"}
    assert {r[2] for r in ablation.plan(["ts2vec"], None, ["uniform"], 1)} == {"ACSF1", "Cricket"}
    both = ablation.plan(["paper", "ts2vec"], ["ACSF1"], ["uniform"], 2)  # one setting complete before the next
    assert both == [(0, "paper", "ACSF1", "uniform"), (1, "paper", "ACSF1", "uniform"),
                    (0, "ts2vec", "ACSF1", "uniform"), (1, "ts2vec", "ACSF1", "uniform")]


def test_report_statistics_and_verdicts(tmp_path):
    hier = [0.70, 0.72, 0.68]
    adaptive = [0.71, 0.70, 0.69]
    uniform = [0.60, 0.60, 0.58]
    for seed in range(3):
        fake_run(tmp_path, "hierarchical", seed, hier[seed], 100.0 + seed)
        fake_run(tmp_path, "adaptive", seed, adaptive[seed], 40.0 + seed)
        fake_run(tmp_path, "uniform", seed, uniform[seed], 35.0)
    fake_run(tmp_path, "uniform", 3, 0.5, 35.0)  # seed 3 of the others is missing
    text = ablation.build_report(tmp_path, ["paper"], ["hierarchical", "adaptive", "uniform"], 4, ["ACSF1"])
    assert text == (tmp_path / "REPORT.md").read_text()
    assert text.splitlines()[4].strip() == ablation.COMMAND
    assert (tmp_path / "ablation_paper.png").stat().st_size > 0

    diffs = np.subtract(adaptive, hier)
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / np.sqrt(3)
    assert abs(diffs.mean()) < 1e-12 and round(half, 3) == 0.043
    expected = "+0.000 [-0.043, +0.043]"  # paired differences +0.01, -0.02, +0.01
    row = next(line for line in text.splitlines() if line.startswith("| adaptive |"))
    assert row.split(" | ")[1:] == ["3", "0.700 ± 0.010", "41.0 ± 1.0", f"{41 / 101:.2f}", expected + " |"]
    # adaptive keeps hierarchical's accuracy at 0.41 of its time; uniform loses accuracy
    assert f"- paper/ACSF1: `adaptive` at {41 / 101:.2f} of hierarchical's time" in text
    assert "`uniform` at" not in text
    # adaptive - uniform over the three seeds both have: +0.11, +0.10, +0.11, interval above 0
    assert "| paper | ACSF1 | 3 | +0.107 [" in text and "| eq. 5 better |" in text
    assert "eq. 5 beats uniform (interval above 0) on: paper/ACSF1." in text
    assert "- paper ACSF1 hierarchical seed 3\n- paper ACSF1 adaptive seed 3\n" in text
    assert "2 of the 12 planned runs" in text and "uniform seed 3" not in text


def test_study_skips_existing_runs_and_refuses_another_configuration(tmp_path, monkeypatch):
    import arl_fast

    trained = []
    monkeypatch.setattr(arl_fast, "load_uea", lambda name, data_dir=None: name)
    monkeypatch.setattr(ablation, "warm_up", lambda data, config: None)

    def train_one(data, setting, dataset, variant, seed, config, threads, backend_requested):
        trained.append((dataset, variant, seed))
        return {"accuracy": 0.5, "train_time_s": 1.0, "config": config}

    monkeypatch.setattr(ablation, "train_one", train_one)
    args = ["--out", str(tmp_path), "--only", "AtrialFibrillation", "--settings", "paper", "--seeds", "2",
            "--variants", "hierarchical", "uniform", "--backend", "reference", "--jobs", "1", "--iters", "3"]
    fake_config = ablation.run_config("paper", "AtrialFibrillation", {"n_iters": 3}, "reference", os.cpu_count(), 1)
    path = ablation.run_path(tmp_path, "paper", "AtrialFibrillation", "uniform", 0)
    ablation.write_atomically(path, {"config": fake_config})
    monkeypatch.setattr(ablation, "build_report", lambda *a, **k: "")
    ablation.main(args)
    assert trained == [("AtrialFibrillation", "hierarchical", 0), ("AtrialFibrillation", "hierarchical", 1),
                       ("AtrialFibrillation", "uniform", 1)]
    assert json.loads(ablation.run_path(tmp_path, "paper", "AtrialFibrillation", "uniform", 1).read_text())[
        "config"]["budget"] == {"n_iters": 3}
    with pytest.raises(SystemExit, match="another configuration"):
        ablation.main(args[:-1] + ["4"])


@pytest.mark.parametrize("argv, match", [(["--variants", "adaptive@0"], "temperature"),
                                         (["--variants", "random"], "unknown loss"),
                                         (["--only", "Nope"], "unknown dataset")])
def test_bad_arguments(argv, match, capsys):
    with pytest.raises(SystemExit):
        ablation.main(argv + ["--report"])
    assert match in capsys.readouterr().err
