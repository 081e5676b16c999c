"""Under torch.distributed every rank trains the same resolution: two CPU processes on gloo."""

import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from arl_fast import AdaptiveResolutionLoss

WORLD = 2
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


def worker(rank, port, out_dir):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
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


def test_ranks_train_the_same_resolutions_from_global_means(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
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
