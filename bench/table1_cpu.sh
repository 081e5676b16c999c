#!/usr/bin/env bash
# The paper's Table 1 on CPU: hierarchical vs adaptive loss, 3 seeds each, same budget for both, on the loss backend
# BACKEND (default reference; BACKEND=cpp bash bench/table1_cpu.sh bench/results/table1_cpu_cpp for the fused kernel),
# on ACSF1 (ships with aeon) and the paper's UEA datasets found offline in DATA (default ../shared/data/UEA).
# Model of the paper's appendix D.4 (representation 16, 2 blocks), logistic regression as in the paper.
# Budgets are cut from TS2Vec's 600 iterations to fit a 2-core machine; each dataset writes its own folder.
# Usage: bash bench/table1_cpu.sh [OUT_DIR]   (about 30 minutes on 2 cores; ONLY="Cricket ..." runs a subset,
# and the combined table is made from every dataset folder in OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/results/table1_cpu}
data=${DATA:-../shared/data/UEA}
common=(--seeds 3 --repr-dims 16 --depth 2 --classifier logreg --backend "${BACKEND:-reference}" --device cpu --quiet)
mkdir -p "$out"
only=" ${ONLY:-ACSF1 AtrialFibrillation Cricket StandWalkJump} "
run() {  # name, budget...
    local name=$1; shift
    [[ $only == *" $name "* ]] || return 0
    arl-fast compare --dataset "$name" --data-dir "$data" "${common[@]}" "$@" --out "$out/$name" | tee "$out/$name.txt"
}
run ACSF1 --epochs 20               # 100 series, 12 iterations an epoch
run AtrialFibrillation --iters 200  # 15 series: 1 iteration an epoch; TS2Vec's budget
run Cricket --epochs 20             # 108 series, 13 iterations an epoch
run StandWalkJump --iters 100       # 12 series, length 2500: 1 iteration an epoch
python - "$out" <<'PY'
import json, sys
from pathlib import Path
from arl_fast.cli import format_table, summarize, totals
out = Path(sys.argv[1])
runs, lengths = [], {}
for path in sorted(out.glob("*/results.json")):
    results = json.loads(path.read_text())
    runs += results["runs"]
    lengths.update(results["lengths"])
losses = ["hierarchical", "adaptive"]
summary = summarize(runs)
table = format_table({"losses": losses, "lengths": lengths, "summary": summary, "total": totals(summary, losses)})
(out / "table1.txt").write_text(table + "\n")
print(table)
PY
