"""The compare plots are written, readable PNGs, from a small synthetic run."""

import numpy as np
import torch

from arl_fast import AdaptiveResolutionLoss
from arl_fast.plots import write_compare_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def adaptive_history(epochs=12, seed=0):
    module = AdaptiveResolutionLoss(seed=seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for _ in range(2):
            length = int(torch.randint(4, 70, (1,), generator=g))
            module(torch.randn(3, length, 4, generator=g), torch.randn(3, length, 4, generator=g))
        module.end_epoch()
    return module.history


def hierarchical_log(epochs=12):
    rng = np.random.default_rng(0)
    return [
        {"epoch": e, "loss": 2.0, "level_losses": list(np.sort(rng.random(int(rng.integers(5, 8))))[::-1] * 3 / (e + 1))}
        for e in range(epochs)
    ]


def blobs(n=45, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    return rng.normal(size=(n, 16)) + 4 * labels[:, None], labels


def test_writes_every_figure(tmp_path):
    results = {"lengths": {"Toy": 64}, "losses": ["hierarchical", "adaptive"]}
    histories = {
        ("Toy", "hierarchical", 0): {"log": hierarchical_log(), "adaptive": None},
        ("Toy", "adaptive", 1): {"log": [], "adaptive": adaptive_history(seed=1)},
        ("Toy", "adaptive", 0): {"log": [], "adaptive": adaptive_history(seed=0)},
    }
    embeddings = {("Toy", "hierarchical"): blobs(seed=0), ("Toy", "adaptive"): blobs(seed=1)}
    paths = write_compare_plots(tmp_path / "out", results, histories, embeddings)
    names = sorted(p.name for p in paths)
    assert names == ["Toy_level_losses.png", "Toy_resolutions.png", "Toy_tsne.png"]
    for path in paths:
        assert path.parent == tmp_path / "out"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_hierarchical_only_and_tiny_test_sets(tmp_path):
    histories = {("A/B", "hierarchical", 0): {"loss_log": hierarchical_log(5)}}
    embeddings = {("A/B", "hierarchical"): blobs(n=2, classes=2)}
    paths = write_compare_plots(tmp_path, {"lengths": {}}, histories, embeddings)
    assert [p.name for p in paths] == ["A_B_level_losses.png"]  # no adaptive run, too few points for t-SNE
    assert paths[0].stat().st_size > 10_000
