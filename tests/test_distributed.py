"""TS2Vec under torch.distributed, two CPU processes on gloo: data-parallel training keeps the ranks identical and
averages their gradients; every rank of the adaptive loss trains the same resolution."""

import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import arl_fast.training
from arl_fast import AdaptiveResolutionLoss, TS2Vec
from arl_fast.data import load_uea
from arl_fast.losses import hierarchical_contrastive_loss

WORLD = 2
REPO = Path(__file__).resolve().parents[1]
EPOCHS = 6


def batch(rank, epoch, step):
    """Rank-local data: each rank sees different crops and values, hence different local losses."""
    g = torch.Generator().manual_seed(1000 * rank + 10 * epoch + step)
    length = int(torch.randint(4, 80, (1,), generator=g))
    return (torch.randn(3, length, 5, generator=g), torch.randn(3, length, 5, generator=g))


def train(module, batches_per_epoch):
    """Run the epochs on ``batches_per_epoch(epoch)``; return the resolution trained each epoch."""
    trained = []
    for epoch in range(EPOCHS):
        for z1, z2 in batches_per_epoch(epoch):
            module(z1, z2)
        trained.append(module.resolution)
        module.end_epoch()
    return trained


def init(rank, port):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))


def worker(rank, port, out_dir):
    init(rank, port)
    try:
        same_seed = AdaptiveResolutionLoss(seed=5, probe_every=1)
        trained = train(same_seed, lambda e: [batch(rank, e, s) for s in range(2)])
        # unseeded ranks draw from different generators: rank 0's draw must still win
        unseeded = AdaptiveResolutionLoss(seed=None, probe_every=1)
        unseeded_trained = train(unseeded, lambda e: [batch(rank, e, s) for s in range(2)])
        torch.save(
            {"trained": trained, "history": same_seed.history, "unseeded": unseeded_trained},
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(fn, *args, timeout=180):
    """Run ``fn(rank, port, *args)`` on WORLD processes; fail, killing them, if they take over ``timeout`` s."""
    context = mp.start_processes(fn, args=(free_port(), *args), nprocs=WORLD, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    try:
        while not context.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"the {WORLD} ranks did not finish in {timeout} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()


def test_ranks_train_the_same_resolutions_from_global_means(tmp_path):
    run_ranks(worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    assert ranks[0]["trained"] == ranks[1]["trained"]
    assert ranks[0]["unseeded"] == ranks[1]["unseeded"]
    for e0, e1 in zip(ranks[0]["history"], ranks[1]["history"]):
        np.testing.assert_allclose(e0["probabilities"], e1["probabilities"], rtol=1e-12)
        np.testing.assert_allclose(e0["level_losses"], e1["level_losses"], rtol=1e-12)

    # the ranks observed the means over both ranks' batches: one process fed all of them agrees
    single = AdaptiveResolutionLoss(seed=5, probe_every=1)
    trained = train(single, lambda e: [batch(r, e, s) for r in range(WORLD) for s in range(2)])
    assert trained == ranks[0]["trained"]
    for mine, theirs in zip(single.history, ranks[0]["history"]):
        np.testing.assert_allclose(mine["level_losses"], theirs["level_losses"], rtol=1e-12)
        np.testing.assert_allclose(mine["probabilities"], theirs["probabilities"], rtol=1e-12)


# ---------------------------------------------------------------------------- TS2Vec data parallel

DDP_EPOCHS = 6


def tiny_model(**kwargs):
    return TS2Vec(6, output_dims=8, hidden_dims=8, depth=1, seed=0, device="cpu", **kwargs)


def ddp_worker(rank, port, out_dir):
    init(rank, port)
    try:
        X = np.load(f"{out_dir}/X.npy")  # BasicMotions' 40 train series: 20 per rank, 5 steps of 4
        straight = tiny_model(lr=1e-2, batch_size=4)
        untrained_loss = held_out_loss(straight, X)
        straight.fit(X, n_epochs=DDP_EPOCHS, checkpoint=f"{out_dir}/straight/model.pt", checkpoint_every=2,
                     progress=False)
        # the same run stopped after 2 epochs, resumed from its checkpoint by new models on every rank
        first = tiny_model(lr=1e-2, batch_size=4)
        first.fit(X, n_epochs=2, checkpoint=f"{out_dir}/resumed/model.pt", progress=False)
        resumed = TS2Vec.from_checkpoint(f"{out_dir}/resumed/model.pt", device="cpu")
        resumed.fit(X, n_epochs=DDP_EPOCHS, progress=False)
        step = first_step(X[:8], batch_size=4)
        torch.save({"net": straight._net.state_dict(), "averaged": straight._averaged.state_dict(),
                    "log": straight.loss_log, "n_iters": straight.n_iters,
                    "held_out_loss": [untrained_loss, held_out_loss(straight, X)],
                    "resumed_net": resumed._net.state_dict(), "resumed_averaged": resumed._averaged.state_dict(),
                    "first_step": step, "draws": recorded_draws(X)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@torch.no_grad()
def held_out_loss(model, X):
    """The loss of the online encoder on fixed views of the first 16 series: the same task before and after
    training, where the training log's epoch losses move with each epoch's random crop lengths."""
    x = torch.as_tensor(X[:16])
    model._net.eval()
    try:
        z1, z2 = model._net(x[:, :70])[:, 30:], model._net(x[:, 30:])[:, :40]
    finally:
        model._net.train()
    return float(hierarchical_contrastive_loss(z1, z2, backend="reference"))


def recorded_draws(X):
    """Every step's max_train_length window start, crop window and row offsets and masks of a short run."""
    draws = []
    crop, mask = arl_fast.training.draw_crop, arl_fast.training.binomial_mask

    def recording_crop(ts_l, *args):
        drawn = crop(ts_l, *args)
        draws.append({"window": drawn[:5], "offset": drawn.offset.tolist(), "masks": []})
        return drawn

    def recording_mask(*args, **kwargs):
        drawn = mask(*args, **kwargs)
        draws[-1]["masks"].append(drawn.clone())
        return drawn

    arl_fast.training.draw_crop, arl_fast.training.binomial_mask = recording_crop, recording_mask
    try:  # series of 100 steps cut to windows of 60: the window's start is drawn once a batch too
        tiny_model(batch_size=4, max_train_length=60).fit(X, n_iters=4, progress=False)
    finally:
        arl_fast.training.draw_crop, arl_fast.training.binomial_mask = crop, mask
    return draws


def fixed_crop(ts_l, batch_size, temporal_unit, host_generator, generator, device):
    """Whole series, no shift: with masks off and no dropout, a step depends only on the batch."""
    return arl_fast.training.Crop(ts_l, 0, ts_l, 0, ts_l, torch.zeros(batch_size, dtype=torch.long, device=device))


def keep_all(batch_size, length, generator, device, p=0.5):
    return torch.ones(batch_size, length, dtype=torch.bool, device=device)


def first_step(X, batch_size):
    """Gradients and weights after one step of a model whose loss is a mean over the series of the batch
    (the temporal term only), so a batch of 8 is exactly the average of two batches of 4."""
    crop, mask = arl_fast.training.draw_crop, arl_fast.training.binomial_mask
    arl_fast.training.draw_crop, arl_fast.training.binomial_mask = fixed_crop, keep_all
    try:
        model = tiny_model(batch_size=batch_size,
                           loss=lambda z1, z2: hierarchical_contrastive_loss(z1, z2, alpha=0.0))
        model._net.dropout = 0.0
        model.fit(X, n_iters=1, progress=False)
    finally:
        arl_fast.training.draw_crop, arl_fast.training.binomial_mask = crop, mask
    return {"grad": [p.grad.clone() for p in model._net.parameters()],
            "weights": [p.detach().clone() for p in model._net.parameters()]}


def test_ddp_training_on_two_ranks(tmp_path):
    """Ranks stay bit-identical, the loss falls, one checkpoint is written and resumes on both ranks, and
    2 ranks x batch 4 take the first step of 1 process x batch 8 on the same eight series."""
    X = load_uea("BasicMotions", download=False).X_train
    np.save(tmp_path / "X.npy", X)
    for folder in ("straight", "resumed"):
        (tmp_path / folder).mkdir()
    run_ranks(ddp_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    for part in ("net", "averaged", "resumed_net", "resumed_averaged"):
        for key, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][key]), f"{part}.{key} differs between the ranks"
    for key, value in ranks[0]["net"].items():  # resuming on both ranks continues the same run
        assert torch.equal(value, ranks[0]["resumed_net"][key])
        assert torch.equal(ranks[0]["averaged"][key], ranks[0]["resumed_averaged"][key])
    assert ranks[0]["log"] == ranks[1]["log"] and len(ranks[0]["log"]) == DDP_EPOCHS
    assert ranks[0]["n_iters"] == DDP_EPOCHS * 5  # global steps: 40 series = 2 ranks x 5 batches of 4
    untrained, trained = ranks[0]["held_out_loss"]
    assert trained < 0.95 * untrained, ranks[0]["held_out_loss"]
    assert os.listdir(tmp_path / "straight") == ["model.pt"]  # rank 0 only, no temporary file left
    saved = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    assert saved["n_epochs"] == DDP_EPOCHS and len(saved["ranks"]) == WORLD
    # the batch-level stream is shared, the per-series one (offsets, masks, dropout) is each rank's own
    assert torch.equal(saved["ranks"][0]["host_generator"], saved["ranks"][1]["host_generator"])
    assert not torch.equal(saved["ranks"][0]["generator"], saved["ranks"][1]["generator"])
    for key, value in saved["net"].items():
        assert torch.equal(value, ranks[0]["net"][key])

    # every step, the ranks cut the same window and crop it alike (no rank waits for a longer crop), as one
    # process draws one window for its whole batch; each rank shifts and masks its own series
    draws = [rank["draws"] for rank in ranks]
    assert len(draws[0]) == len(draws[1]) == 4
    for d0, d1 in zip(*draws):
        assert d0["window"] == d1["window"]
    assert len({d["window"] for d in draws[0]}) > 1  # the window is drawn anew each step
    assert any(d0["offset"] != d1["offset"] for d0, d1 in zip(*draws))
    assert all(not torch.equal(a, b) for d0, d1 in zip(*draws) for a, b in zip(d0["masks"], d1["masks"]))

    steps = [rank["first_step"] for rank in ranks]
    for a, b in zip(steps[0]["grad"], steps[1]["grad"]):
        assert torch.equal(a, b)
    single = first_step(X[:8], batch_size=8)
    for a, b in zip(steps[0]["grad"], single["grad"]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    for a, b in zip(steps[0]["weights"], single["weights"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # one rank's half alone gives another gradient: the agreement above is the average of both halves
    half = first_step(X[[0, 2, 4, 6]], batch_size=4)
    assert not all(torch.allclose(a, b, rtol=1e-3) for a, b in zip(half["grad"], single["grad"]))


def test_the_command_line_trains_under_torchrun(tmp_path):
    """The README's `torchrun --nproc-per-node 2 -m arl_fast train ...`: both ranks join, the budget counts global
    steps (40 series on 2 ranks of batch 8: 2 steps an epoch), rank 0 alone writes the checkpoint, with both
    ranks' state."""
    path = tmp_path / "model.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(WORLD),
               "-m", "arl_fast", "train", "--dataset", "BasicMotions", "--epochs", "2", "--repr-dims", "8",
               "--hidden-dims", "8", "--depth", "1", "--threads", "1", "--device", "cpu", "--quiet", "--out", str(path)]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "2 epochs, 4 iterations" in done.stdout
    assert os.listdir(tmp_path) == ["model.pt"]
    saved = torch.load(path, weights_only=True)
    assert (saved["n_epochs"], saved["n_iters"], len(saved["ranks"])) == (2, 4, WORLD)
