#!/usr/bin/env bash
# TS2Vec's forecasting protocol on ETTh1 with TS2Vec's defaults (repr 320, depth 10, batch 8, max_train_length 3000,
# 600 iterations multivariate / 200 univariate by the original's rule), one torch thread per run, two jobs side by
# side on a 2-core machine:
#   job 1: multivariate, cpp backend, hierarchical / adaptive / uniform, seeds 0..SEEDS-1 (seeds outermost);
#   job 2: multivariate, reference backend, hierarchical, seed 0 (beside job 1's first runs), then univariate
#          (target OT), cpp backend, hierarchical, seeds 0-2, then adaptive and uniform, seed 0.
# A multivariate run takes 25-40 minutes on one thread of a 2-core Xeon: SEEDS=1 (about 1.5 hours in all) measures
# each loss once; SEEDS=3 takes about 4 hours. Then: python bench/forecasting_report.py
# Tables, results.json and plots land in bench/results/forecasting/<name>/; the logs beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${ETT_DIR:-../shared/data/ETT}
out=bench/results/forecasting
mkdir -p "$out"
common=(compare --task forecasting --dataset ETTh1 --data-dir "$data" --threads 1 --quiet)
lscpu | grep 'Model name' | tee "$out/cpu.txt"
(arl-fast "${common[@]}" --backend cpp --losses hierarchical adaptive uniform --seeds "${SEEDS:-1}" --out "$out/multivariate" \
   > "$out/multivariate.log" 2>&1) &
job1=$!
(arl-fast "${common[@]}" --backend reference --losses hierarchical --seeds 1 --out "$out/multivariate_reference" \
   > "$out/multivariate_reference.log" 2>&1
 arl-fast "${common[@]}" --univariate --backend cpp --losses hierarchical --seeds 3 --out "$out/univariate" \
   > "$out/univariate.log" 2>&1
 arl-fast "${common[@]}" --univariate --backend cpp --losses adaptive uniform --seeds 1 --out "$out/univariate_adaptive" \
   > "$out/univariate_adaptive.log" 2>&1) &
job2=$!
wait $job1 $job2
