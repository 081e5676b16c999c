"""Summarise the ETTh1 forecasting runs of ``bench/forecasting.sh`` into ``SUMMARY.md`` beside them.

Reads each setting's ``results.json`` (whatever runs it holds so far: the runs are written one by one), prints the
per-loss tables, the paper's figures beside the hierarchical loss's, the time ratios and the cpp / reference
comparison of the first seed.

    python bench/forecasting_report.py [--dir bench/results/forecasting]

A setting's folder ``<setting>`` holds the hierarchical runs (and maybe others), ``<setting>_adaptive`` other
losses run apart, ``<setting>_bf16`` and ``<setting>_adaptive_bf16`` runs under bfloat16 autocast (compared with
the float32 runs of the same loss and seed), ``multivariate_reference`` the reference backend's runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arl_fast.tasks import forecasting

# TS2Vec's published test MSE on ETTh1 (normalised scale), per horizon.
PAPER_MSE = {
    "multivariate": {"24": 0.599, "48": 0.629, "168": 0.755, "336": 0.907, "720": 1.048},
    "univariate": {"24": 0.039, "48": 0.062, "168": 0.134, "336": 0.154, "720": 0.163},
}
# The spread of published re-runs around them: (below, above).
PAPER_BAND = {
    "multivariate": {h: (0.05, 0.12) for h in PAPER_MSE["multivariate"]},
    "univariate": {"24": (0.02, 0.02), "48": (0.02, 0.02), "168": (0.03, 0.03), "336": (0.03, 0.03),
                   "720": (0.03, 0.03)},
}


def load(folder: Path):
    path = folder / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def paper_rows(setting, summary) -> list[str]:
    entry = summary["hierarchical"]
    lines = ["| horizon | ours (hierarchical) | paper | band | inside |", "| ---: | ---: | ---: | ---: | :---: |"]
    for h, paper in PAPER_MSE[setting].items():
        if h not in entry["mse"]:
            continue
        below, above = PAPER_BAND[setting][h]
        ours, std = entry["mse"][h], entry["mse_std"][h]
        inside = paper - below <= ours <= paper + above
        spread = f" ± {std:.3f}" if entry["n_seeds"] > 1 else ""
        lines.append(f"| {h} | {ours:.3f}{spread} | {paper:.3f} | [{paper - below:.3f}, {paper + above:.3f}] | "
                     f"{'yes' if inside else 'no'} |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="bench/results/forecasting")
    root = Path(parser.parse_args(argv).dir)
    command = (root / "COMMAND.txt").read_text().strip() if (root / "COMMAND.txt").is_file() else \
        "bash bench/forecasting.sh"
    cpu = (root / "cpu.txt").read_text().split(":", 1)[-1].strip() if (root / "cpu.txt").is_file() else "unknown"
    out = ["# ETTh1 forecasting with TS2Vec's defaults", "",
           f"CPU: {cpu}, one torch thread per run, two runs side by side (`{command}`); rebuilt from the runs' "
           f"results.json by `python bench/forecasting_report.py --dir {root}`.", ""]
    if (root / "NOTE.md").is_file():  # what the runs' files cannot say, e.g. the machine's load while they ran
        out += [(root / "NOTE.md").read_text().strip(), ""]
    for setting in ("multivariate", "univariate"):
        results = load(root / setting)
        if results is None:
            continue
        summary = results["summary"]["ETTh1"]
        seeds = sorted({run["seed"] for run in results["runs"]})
        out += [f"## {setting} (cpp backend; seeds {', '.join(map(str, seeds))})", "", "```",
                forecasting.format_table(results), "```", ""]
        out += ["Test MSE of the hierarchical loss against TS2Vec's published figure:", ""]
        out += paper_rows(setting, summary) + [""]
        others = load(root / f"{setting}_adaptive")  # the other losses, when run apart from the hierarchical loss
        if others is not None:
            out += [f"Other losses, {setting}, run apart from the hierarchical ones (their time ratios are a "
                    "like-for-like comparison only where the runs say they ran side by side; their MSE is):", "",
                    "```", forecasting.format_table(others), "```", ""]
            results = {**results, "runs": results["runs"] + others["runs"]}
        out += loss_comparison(results)
        bf16 = [found for name in (f"{setting}_bf16", f"{setting}_adaptive_bf16") if (found := load(root / name))]
        if bf16:
            out += precision_comparison(results, {"runs": [run for found in bf16 for run in found["runs"]]})
    reference = load(root / "multivariate_reference")
    cpp = load(root / "multivariate")
    if reference and cpp:
        out += backend_comparison(cpp, reference)
    text = "\n".join(out)
    (root / "SUMMARY.md").write_text(text + "\n")
    print(text)
    return 0


def loss_comparison(results) -> list[str]:
    """Each loss against the hierarchical loss run by run for the seeds both have: time ratio and MSE."""
    runs = {(r["loss"], r["seed"]): r for r in results["runs"]}
    lines = ["Each loss against the hierarchical loss with the same seed (time ratio; MSE per horizon, "
             "loss / hierarchical):", "", "| loss | seed | time ratio | MSE (loss / hierarchical) per horizon |",
             "| --- | ---: | ---: | --- |"]
    for (loss, seed), run in sorted(runs.items(), key=lambda item: (item[0][0] != "adaptive", item[0])):
        base = runs.get(("hierarchical", seed))
        if loss == "hierarchical" or base is None:
            continue
        cells = ", ".join(f"{h}: {run['mse'][h]:.3f} / {base['mse'][h]:.3f}" for h in run["mse"])
        lines.append(f"| {loss} | {seed} | {run['train_time_s'] / base['train_time_s']:.2f} | {cells} |")
    return lines + [""]


def precision_comparison(fp32, bf16) -> list[str]:
    """Each bf16 run against the float32 run of the same loss and seed: time ratio and MSE per horizon."""
    base = {(r["loss"], r["seed"]): r for r in fp32["runs"]}
    lines = ["bfloat16 autocast (`--precision bf16`) against float32, the same loss and seed (time ratio; MSE per "
             "horizon, bf16 / fp32):", "", "| loss | seed | time ratio | MSE (bf16 / fp32) per horizon |",
             "| --- | ---: | ---: | --- |"]
    for run in bf16["runs"]:
        other = base.get((run["loss"], run["seed"]))
        if other is None:
            continue
        cells = ", ".join(f"{h}: {run['mse'][h]:.3f} / {other['mse'][h]:.3f}" for h in run["mse"])
        lines.append(f"| {run['loss']} | {run['seed']} | {run['train_time_s'] / other['train_time_s']:.2f} | "
                     f"{cells} |")
    return lines + [""]


def backend_comparison(cpp, reference) -> list[str]:
    pairs = [(c, r) for r in reference["runs"] for c in cpp["runs"]
             if c["loss"] == r["loss"] == "hierarchical" and c["seed"] == r["seed"]]
    lines = ["## cpp against the reference backend (multivariate, hierarchical, the runs side by side)", "",
             "| seed | cpp time (s) | reference time (s) | speed-up | MSE cpp per horizon | MSE reference per horizon |",
             "| ---: | ---: | ---: | ---: | --- | --- |"]
    for c, r in pairs:
        mse = lambda run: ", ".join(f"{h}: {v:.3f}" for h, v in run["mse"].items())  # noqa: E731
        lines.append(f"| {c['seed']} | {c['train_time_s']:.0f} | {r['train_time_s']:.0f} | "
                     f"{r['train_time_s'] / c['train_time_s']:.2f}x | {mse(c)} | {mse(r)} |")
    return lines + [""]


if __name__ == "__main__":
    raise SystemExit(main())
