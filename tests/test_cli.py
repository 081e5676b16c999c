import json

import pytest

from arl_fast import cli
from arl_fast.backends import backend_names, kernel_variant, resolve_backend
from arl_fast.cli import DEFAULT_LOSSES, available_losses, format_table, main, summarize, totals
from arl_fast.ts2vec import TS2Vec

TINY = ["--depth", "1", "--hidden-dims", "8", "--repr-dims", "8", "--device", "cpu", "--quiet"]


def test_compare_without_dataset_runs_the_acsf1_demonstration(monkeypatch, tmp_path):
    seen = []

    def stop_before_training(args, input_dims, loss, seed, device):
        seen.append((args.dataset, args.epochs, args.iters, input_dims))
        raise ValueError("stopped before training")

    monkeypatch.setattr(cli, "_model", stop_before_training)
    assert main(["compare", "--quiet", "--out", str(tmp_path / "a")]) == 2
    assert main(["compare", "--quiet", "--iters", "5", "--out", str(tmp_path / "b")]) == 2
    assert main(["compare", "--quiet", "--dataset", "BasicMotions", "--out", str(tmp_path / "c")]) == 2
    assert seen == [(None, cli.DEMO_EPOCHS, None, 1), (None, None, 5, 1), (["BasicMotions"], None, None, 6)]


def test_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["compare", "--dataset", "BasicMotions", "--iters", "6", "--seeds", "2", "--threads", "1",
                 "--out", str(out), *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    losses = DEFAULT_LOSSES
    assert results["losses"] == losses and results["lengths"] == {"BasicMotions": 100}
    assert results["config"]["threads"] == 1 and results["config"]["device"] == "cpu"

    assert len(results["runs"]) == 2 * len(losses)
    for run in results["runs"]:
        assert set(run) >= {"dataset", "length", "loss", "seed", "train_time_s", "accuracy", "epochs", "device",
                            "backend", "kernel_variant"}
        assert (run["dataset"], run["length"], run["device"], run["backend"]) == ("BasicMotions", 100, "cpu",
                                                                                  resolve_backend("auto", "cpu"))
        assert run["kernel_variant"] == kernel_variant(run["backend"], "cpu") != ""
        assert run["loss"] in losses and run["seed"] in (0, 1)
        assert run["train_time_s"] > 0 and 0 <= run["accuracy"] <= 1
        assert run["epochs"] == 1 and run["iters"] == 6  # 40 series, batch 8: 5 iterations an epoch
    for loss in losses:
        runs = [r for r in results["runs"] if r["loss"] == loss]
        summary = results["summary"]["BasicMotions"][loss]
        assert summary["train_time_s"] == pytest.approx(sum(r["train_time_s"] for r in runs) / 2)
        assert summary["accuracy"] == pytest.approx(sum(r["accuracy"] for r in runs) / 2)
        assert results["total"][loss] == pytest.approx(summary["train_time_s"])

    assert ("time_ratio" in results["summary"]["BasicMotions"]) == ("adaptive" in losses)
    assert (out / "BasicMotions_tsne.png").is_file() and (out / "BasicMotions_level_losses.png").is_file()
    assert (out / "BasicMotions_resolutions.png").is_file()

    printed = capsys.readouterr().out
    backend = results["runs"][0]["backend"]
    assert printed.splitlines()[0].endswith(f"loss backend on cpu: {backend} ({kernel_variant(backend, 'cpu')})")
    assert "Dataset" in printed and "Length" in printed and "Total" in printed
    assert all(loss in printed for loss in losses)
    assert printed.count("BasicMotions") >= 1


def test_same_seed_same_accuracy(tmp_path):
    accuracies = []
    for name in ("a", "b"):
        args = ["compare", "--losses", "hierarchical", "--iters", "5", "--out", str(tmp_path / name), *TINY]
        assert main(args) == 0
        run = json.loads((tmp_path / name / "results.json").read_text())["runs"][0]
        accuracies.append(run["accuracy"])
    assert accuracies[0] == accuracies[1]


def test_compare_trains_the_selection_variants(tmp_path):
    out = tmp_path / "variants"
    assert main(["compare", "--dataset", "BasicMotions", "--iters", "10", "--threads", "1", "--out", str(out),
                 "--losses", "uniform,finest", "adaptive@0.1", "uniform", *TINY]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["losses"] == ["uniform", "finest", "adaptive@0.1"]
    assert [run["loss"] for run in results["runs"]] == results["losses"]
    assert set(results["summary"]["BasicMotions"]) == set(results["losses"])
    assert set(available_losses()) == {"hierarchical", "adaptive", "uniform", "finest"}


def test_summary_and_table_with_both_losses():
    runs = [
        {"dataset": "A", "length": 10, "loss": "hierarchical", "seed": 0, "train_time_s": 4.0, "accuracy": 0.5},
        {"dataset": "A", "length": 10, "loss": "hierarchical", "seed": 1, "train_time_s": 6.0, "accuracy": 0.7},
        {"dataset": "A", "length": 10, "loss": "adaptive", "seed": 0, "train_time_s": 2.0, "accuracy": 0.6},
        {"dataset": "B", "length": 900, "loss": "hierarchical", "seed": 0, "train_time_s": 10.0, "accuracy": 1.0},
        {"dataset": "B", "length": 900, "loss": "adaptive", "seed": 0, "train_time_s": 8.0, "accuracy": 0.9},
    ]
    summary = summarize(runs)
    assert summary["A"]["hierarchical"] == {"train_time_s": 5.0, "accuracy": pytest.approx(0.6)}
    assert summary["A"]["time_ratio"] == pytest.approx(0.4) and summary["B"]["time_ratio"] == pytest.approx(0.8)
    total = totals(summary, ["hierarchical", "adaptive"])
    assert total == {"hierarchical": 15.0, "adaptive": 10.0, "time_ratio": pytest.approx(10 / 15)}
    table = format_table({"losses": ["hierarchical", "adaptive"], "lengths": {"A": 10, "B": 900},
                          "summary": summary, "total": total})
    lines = table.splitlines()
    assert lines[1].split() == ["Dataset", "Length", "time", "(s)", "acc.", "time", "(s)", "acc.", "hier.", "time"]
    assert lines[3].split() == ["A", "10", "5.00", "0.600", "2.00", "0.600", "0.40"]
    assert lines[4].split() == ["B", "900", "10.00", "1.000", "8.00", "0.900", "0.80"]
    assert lines[-1].split() == ["Total", "-", "15.00", "-", "10.00", "-", "0.67"]


def test_train_saves_a_resumable_model(tmp_path, capsys):
    path = tmp_path / "model.pt"
    assert main(["train", "--iters", "5", "--out", str(path), "--backend", "reference", *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].endswith("loss backend on cpu: reference (pytorch)") and "accuracy" in printed
    model = TS2Vec.from_checkpoint(path, device="cpu")
    assert (model.n_iters, model.n_epochs, model.output_dims) == (5, 1, 8)
    assert main(["train", "--resume", str(path), "--iters", "10", "--out", str(path), *TINY]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("reference (pytorch)")  # the checkpoint's backend
    assert TS2Vec.from_checkpoint(path, device="cpu").n_iters == 10


def test_errors_are_reported(tmp_path, capsys):
    assert main(["compare", "--dataset", "NoSuchData", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                 *TINY]) == 2
    error = capsys.readouterr().err
    assert "NoSuchData" in error and str(tmp_path) in error
    assert not (tmp_path / "o").exists()
    assert main(["compare", "--losses", "flat", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "unknown loss 'flat'" in capsys.readouterr().err
    assert main(["compare", "--losses", "adaptive@-1", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["compare", "--losses", "finest@0.1", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "only 'adaptive' takes a temperature" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["compare", "--backend", "nope", "--out", str(tmp_path / "o"), *TINY]) == 2
    assert "backend" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--seeds", "0"])
    with pytest.raises(SystemExit):
        main(["compare", "--epochs", "2", "--iters", "3"])


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "compare" in text and "train" in text and "info" in text and "examples" in text
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert f"auto (the fastest that runs on the device), {', '.join(backend_names())};" in " ".join(
        capsys.readouterr().out.split())
