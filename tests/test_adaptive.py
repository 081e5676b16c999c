"""AdaptiveResolutionLoss: trains the selected level only, probes the trend, feeds the selector per epoch."""

import numpy as np
import pytest
import torch

from arl_fast import AdaptiveResolutionLoss, ResolutionSelector, num_levels, resolution_loss, resolution_losses


def pair(length, batch=4, channels=6, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(batch, length, channels, generator=g, dtype=torch.float64)
    z2 = torch.randn(batch, length, channels, generator=g, dtype=torch.float64)
    return z1.requires_grad_(grad), z2.requires_grad_(grad)


def run_epochs(module, lengths_per_epoch, seed=0):
    """Feed batches of the given lengths; return each step's (resolution, loss value)."""
    steps = []
    for epoch, lengths in enumerate(lengths_per_epoch):
        for step, length in enumerate(lengths):
            z1, z2 = pair(length, seed=seed + 100 * epoch + step)
            steps.append((module.resolution, module(z1, z2).item()))
        module.end_epoch()
    return steps


def test_forward_is_the_selected_level_loss_with_its_gradient():
    module = AdaptiveResolutionLoss(alpha=0.3, temporal_unit=1, seed=2)
    z1, z2 = pair(37, grad=True)
    loss = module(z1, z2)
    level = ResolutionSelector.level_for(module.resolution, num_levels(37))
    a1, a2 = pair(37, grad=True)
    expected = resolution_loss(a1, a2, level, alpha=0.3, temporal_unit=1, backend="reference")
    torch.testing.assert_close(loss, expected)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(z1.grad, a1.grad)
    torch.testing.assert_close(z2.grad, a2.grad)


def test_first_resolution_is_the_selectors_uniform_draw():
    for seed in range(5):
        module = AdaptiveResolutionLoss(seed=seed)
        module(*pair(50))
        assert module.resolution == ResolutionSelector(seed=seed).sample(n_resolutions=num_levels(50))
        assert module.probabilities == [1 / num_levels(50)] * num_levels(50)


def test_first_resolutions_vary_with_seed():
    drawn = set()
    for seed in range(20):
        module = AdaptiveResolutionLoss(seed=seed)
        module(*pair(50))
        drawn.add(module.resolution)
    assert len(drawn) > 2 and drawn <= set(range(num_levels(50)))


def test_end_epoch_observes_the_epoch_means_aligned_from_the_coarsest():
    module = AdaptiveResolutionLoss(alpha=0.5, seed=0, probe_every=1)
    batches = [pair(40, seed=1), pair(9, seed=2), pair(23, seed=3)]  # 6, 4 and 5 levels
    for z1, z2 in batches:
        module(z1, z2)
    sums, counts = np.zeros(6), np.zeros(6)
    for z1, z2 in batches:
        aligned = resolution_losses(z1, z2, backend="reference").flip(0).numpy()
        sums[: len(aligned)] += aligned
        counts[: len(aligned)] += 1
    first_resolution = module.resolution
    drawn = module.end_epoch()
    entry = module.history[0]
    assert entry["epoch"] == 0 and entry["resolution"] == first_resolution
    np.testing.assert_allclose(entry["level_losses"], sums / counts, rtol=1e-12)
    # the next draw comes from eq. 5's probabilities: uniform after one measurement
    np.testing.assert_allclose(module.probabilities, [1 / 6] * 6)
    assert drawn == module.resolution and 0 <= drawn < 6

    later = [pair(40, seed=4), pair(12, seed=5)]  # 6 and 4 levels
    for z1, z2 in later:
        module(z1, z2)
    sums2, counts2 = np.zeros(6), np.zeros(6)
    for z1, z2 in later:
        aligned = resolution_losses(z1, z2, backend="reference").flip(0).numpy()
        sums2[: len(aligned)] += aligned
        counts2[: len(aligned)] += 1
    module.end_epoch()
    reference = ResolutionSelector()
    reference.observe((sums / counts)[::-1])
    reference.observe((sums2 / counts2)[::-1])
    np.testing.assert_allclose(module.probabilities, reference.probabilities(), rtol=1e-12)
    np.testing.assert_allclose(module.history[1]["level_losses"], sums2 / counts2, rtol=1e-12)
    np.testing.assert_allclose(module.history[1]["probabilities"], [1 / 6] * 6)  # what epoch 1 was drawn from


def test_history_fills_forward_resolutions_a_short_epoch_lacks():
    module = AdaptiveResolutionLoss(seed=0, probe_every=1)
    long_pair = pair(64)  # 7 levels
    module(*long_pair)
    module.end_epoch()
    short_pair = pair(8, seed=9)  # 4 levels
    module(*short_pair)
    module.end_epoch()
    long_aligned = resolution_losses(*long_pair, backend="reference").flip(0).tolist()
    short_aligned = resolution_losses(*short_pair, backend="reference").flip(0).tolist()
    np.testing.assert_allclose(module.history[1]["level_losses"], short_aligned + long_aligned[4:], rtol=1e-12)
    probs = module.probabilities
    assert len(probs) == 7 and probs[4:] == [0.0, 0.0, 0.0] and sum(probs) == pytest.approx(1.0)
    assert module.resolution < 4


def test_short_crop_trains_its_finest_level():
    module = AdaptiveResolutionLoss(seed=0)
    module.resolution, module.probabilities = 6, [1 / 7] * 7  # the finest resolution of length-64 crops
    z1, z2 = pair(5)
    torch.testing.assert_close(module(z1, z2), resolution_loss(z1, z2, 0, backend="reference"))


def test_probe_every_counts_steps_across_epochs():
    module = AdaptiveResolutionLoss(seed=0, probe_every=2)
    epochs = [[pair(16, seed=s) for s in range(5)], [pair(16, seed=s) for s in range(10, 14)]]
    for batches in epochs:
        for z1, z2 in batches:
            module(z1, z2)
        module.end_epoch()
    # global steps 0..4 then 5..8: probes at 0, 2, 4, then 6 and 8 (the second epoch's 2nd and 4th batches)
    for entry, probed_batches in zip(module.history, [epochs[0][::2], epochs[1][1::2]]):
        probed = [resolution_losses(z1, z2, backend="reference") for z1, z2 in probed_batches]
        expected = torch.stack(probed).mean(0).flip(0).numpy()
        np.testing.assert_allclose(entry["level_losses"], expected, rtol=1e-12)


def test_epochs_shorter_than_probe_every_keep_their_resolution_until_a_probe():
    module = AdaptiveResolutionLoss(seed=0, probe_every=3)
    batches = [pair(16, seed=s) for s in range(7)]  # one step an epoch: probes at steps 0, 3 and 6
    drawn = []
    for z1, z2 in batches:
        module(z1, z2)
        drawn.append(module.end_epoch())
    # a choice lasts 3 steps: draws at the ends of epochs 2 and 5, each from its own period's probe
    assert module.selector.num_observations == 2
    trained = [entry["resolution"] for entry in module.history]
    assert trained[0] == trained[1] == trained[2] and trained[3] == trained[4] == trained[5]
    assert drawn[:2] == [trained[0]] * 2 and drawn[2] == trained[3] and drawn[5] == trained[6]
    values = [entry["level_losses"] for entry in module.history]
    assert values[0] == values[1] == [] and values[2] == values[3] == values[4] != values[5] == values[6]
    for entry, probed in ((2, batches[0]), (5, batches[3])):
        expected = resolution_losses(*probed, backend="reference").flip(0).numpy()
        np.testing.assert_allclose(values[entry], expected, rtol=1e-12)
    drawn_from = [entry["probabilities"] for entry in module.history]
    assert drawn_from[3] == drawn_from[4] == drawn_from[5] != drawn_from[6]


def test_a_period_spanning_epochs_resumes_from_its_state_dict():
    """A choice in the middle of its period survives a state_dict round trip: the same draws follow."""
    batches = [pair(16, seed=s) for s in range(9)]
    full = AdaptiveResolutionLoss(seed=4, probe_every=3)
    for z1, z2 in batches[:4]:
        full(z1, z2)
        full.end_epoch()
    resumed = AdaptiveResolutionLoss(seed=99, probe_every=3)
    resumed.load_state_dict(full.state_dict())
    for module in (full, resumed):
        for z1, z2 in batches[4:]:
            module(z1, z2)
            module.end_epoch()
    assert [h["resolution"] for h in resumed.history] == [h["resolution"] for h in full.history]
    assert resumed.history[-1]["level_losses"] == full.history[-1]["level_losses"]


def test_default_probes_every_fourth_step():
    module = AdaptiveResolutionLoss(seed=0)
    assert module.probe_every == 4
    batches = [pair(16, seed=s) for s in range(6)]
    for z1, z2 in batches:
        module(z1, z2)
    module.end_epoch()
    probed = [resolution_losses(z1, z2, backend="reference") for z1, z2 in (batches[0], batches[4])]
    expected = torch.stack(probed).mean(0).flip(0).numpy()
    np.testing.assert_allclose(module.history[0]["level_losses"], expected, rtol=1e-12)


def test_probe_builds_no_autograd_graph():
    z1, z2 = pair(64, grad=True)
    saved = []
    module = AdaptiveResolutionLoss(seed=0, backend="reference")  # saves what resolution_loss(reference) saves
    module(*pair(64))  # draw the resolution first
    level = ResolutionSelector.level_for(module.resolution, num_levels(64))
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        module(z1, z2)
    with_probe = len(saved)
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        resolution_loss(z1, z2, level, backend="reference")
    assert with_probe == len(saved) > 0


def test_eval_mode_does_not_probe():
    module = AdaptiveResolutionLoss(seed=0)
    module.eval()
    module(*pair(32))
    with pytest.raises(RuntimeError, match="end_epoch"):
        module.end_epoch()
    module.train()
    module(*pair(32))
    module.end_epoch()
    assert len(module.history) == 1


def test_training_is_deterministic_for_a_seed():
    lengths = [[30, 17, 64], [9, 50], [33, 33, 12], [64], [20, 41]]
    a, b = AdaptiveResolutionLoss(seed=11), AdaptiveResolutionLoss(seed=11)
    assert run_epochs(a, lengths) == run_epochs(b, lengths)
    assert a.history == b.history
    assert len({r for r, _ in run_epochs(AdaptiveResolutionLoss(seed=11), lengths * 4)}) > 1


def test_state_dict_round_trip_resumes_identically():
    lengths = [[30, 17, 64], [9, 50], [33, 33, 12], [64, 5], [20, 41], [48, 48]]
    full = AdaptiveResolutionLoss(seed=4, probe_every=2)
    run_epochs(full, lengths[:3])
    z1, z2 = pair(40, seed=77)
    full(z1, z2)  # a step into the next epoch: running sums and step counter are state too
    state = full.state_dict()
    assert set(state) == {"_extra_state"}
    rest = run_epochs(full, lengths[3:], seed=1000)

    resumed = AdaptiveResolutionLoss(seed=123, probe_every=2)
    resumed.load_state_dict(state)
    assert run_epochs(resumed, lengths[3:], seed=1000) == rest
    assert resumed.history == full.history


def test_state_survives_torch_save(tmp_path):
    module = AdaptiveResolutionLoss(seed=1)
    run_epochs(module, [[20, 30], [40]])
    module(*pair(25))  # mid-epoch: running sums are saved too
    torch.save(module.state_dict(), tmp_path / "loss.pt")  # plain Python values: loads with weights_only
    loaded = AdaptiveResolutionLoss()
    loaded.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    assert loaded.history == module.history and loaded.resolution == module.resolution
    assert loaded.end_epoch() == module.end_epoch()
    assert loaded.history == module.history


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"temporal_unit": -1}, ValueError, "temporal_unit"),
        ({"probe_every": 0}, ValueError, "probe_every"),
        ({"probe_every": 2.0}, TypeError, "probe_every"),
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"score": "ratio"}, ValueError, "score"),
        ({"backend": 3}, TypeError, "backend"),
        ({"seed": -2}, TypeError, "seed"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AdaptiveResolutionLoss(**kwargs)


def test_bad_inputs_and_calls():
    module = AdaptiveResolutionLoss(seed=0)
    with pytest.raises(RuntimeError, match="end_epoch"):
        module.end_epoch()
    z1, z2 = pair(16)
    with pytest.raises(ValueError, match="same shape"):
        module(z1, z2[:, :8])
    with pytest.raises(TypeError, match="z1"):
        module(z1.numpy(), z2)
    with pytest.raises(ValueError, match="backend"):
        AdaptiveResolutionLoss(backend="nope")(z1, z2)


def test_ts2vec_adaptive_training_is_deterministic_on_cpu():
    from arl_fast.ts2vec import TS2Vec

    x = np.random.default_rng(0).normal(size=(12, 40, 2)).astype(np.float32)

    def trained(seed):
        model = TS2Vec(2, output_dims=8, hidden_dims=8, depth=1, loss="adaptive", seed=seed, device="cpu")
        model.fit(x, n_epochs=4, progress=False)
        return model.loss.history, model.encode(x[:3], "full_series")

    (history_a, features_a), (history_b, features_b) = trained(3), trained(3)
    assert history_a == history_b and len(history_a) == 4
    np.testing.assert_array_equal(features_a, features_b)
    history_c, _ = trained(4)
    assert history_c != history_a


def test_uniform_trains_the_drawn_resolution_draws_uniformly_and_never_probes(monkeypatch):
    import arl_fast.adaptive as adaptive

    probes = []
    monkeypatch.setattr(adaptive, "resolution_losses", lambda *args, **kwargs: probes.append(1))
    module = AdaptiveResolutionLoss(seed=5, selection="uniform", probe_every=1)
    z1, z2 = pair(64)  # 7 levels
    for epoch in range(400):
        loss = module(z1, z2)
        if epoch == 0:
            level = ResolutionSelector.level_for(module.resolution, 7)
            torch.testing.assert_close(loss, resolution_loss(z1, z2, level, backend="reference"))
        module.end_epoch()
    assert probes == [] and module.selector.num_observations == 0
    drawn = np.bincount([h["resolution"] for h in module.history], minlength=7)
    assert drawn.min() > 400 / 7 / 2  # every resolution present is drawn, none favoured
    assert module.history[1]["probabilities"] == [1 / 7] * 7 and module.history[1]["level_losses"] == []


def test_uniform_draws_among_the_resolutions_the_epoch_had():
    module = AdaptiveResolutionLoss(seed=0, selection="uniform")
    run_epochs(module, [[6, 3]] * 50)  # at most 3 levels
    assert {h["resolution"] for h in module.history} == {0, 1, 2}
    assert module.probabilities == [1 / 3] * 3


def test_finest_trains_level_zero_of_every_batch():
    module = AdaptiveResolutionLoss(seed=0, selection="finest")
    for length in (64, 9, 33):
        z1, z2 = pair(length, seed=length)
        torch.testing.assert_close(module(z1, z2), resolution_loss(z1, z2, 0, backend="reference"))
    assert module.end_epoch() is None
    assert module.history == [{"epoch": 0, "resolution": None, "probabilities": None, "level_losses": []}]


def test_uniform_state_round_trip_resumes_identically():
    lengths = [[30, 17, 64], [9, 50], [33, 33, 12], [64, 5], [20, 41], [48, 48]]
    full = AdaptiveResolutionLoss(seed=4, selection="uniform")
    run_epochs(full, lengths[:3])
    full(*pair(40, seed=77))
    resumed = AdaptiveResolutionLoss(seed=9, selection="uniform")
    resumed.load_state_dict(full.state_dict())
    assert run_epochs(resumed, lengths[3:], seed=1000) == run_epochs(full, lengths[3:], seed=1000)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("adaptive", {"selection": "adaptive"}),
        ("uniform", {"selection": "uniform"}),
        ("finest", {"selection": "finest"}),
        ("adaptive@0.1", {"selection": "adaptive", "temperature": 0.1}),
        ("adaptive@2", {"selection": "adaptive", "temperature": 2.0}),
    ],
)
def test_variant_names(name, expected):
    from arl_fast.adaptive import variant_options

    assert variant_options(name) == expected
    module = AdaptiveResolutionLoss.from_name(name, seed=1)
    assert module.selection == expected["selection"]
    assert module.selector.temperature == expected.get("temperature", 1.0)


@pytest.mark.parametrize(
    "name, match",
    [
        ("flat", "loss must be 'adaptive'.*got 'flat'"),
        ("adaptive@", "temperature after '@'"),
        ("adaptive@abc", "temperature after '@'"),
        ("adaptive@0", "temperature after '@'"),
        ("adaptive@-1", "temperature after '@'"),
        ("adaptive@inf", "temperature after '@'"),
        ("uniform@0.1", "only 'adaptive' takes a temperature"),
    ],
)
def test_bad_variant_names(name, match):
    with pytest.raises(ValueError, match=match):
        AdaptiveResolutionLoss.from_name(name)


def test_bad_selection():
    with pytest.raises(ValueError, match="selection must be one of"):
        AdaptiveResolutionLoss(selection="random")


@pytest.mark.parametrize("name", ["uniform", "finest", "adaptive@0.1"])
def test_ts2vec_trains_each_variant_and_reloads_it(name, tmp_path):
    from arl_fast.ts2vec import TS2Vec

    x = np.random.default_rng(0).normal(size=(12, 40, 2)).astype(np.float32)
    model = TS2Vec(2, output_dims=8, hidden_dims=8, depth=1, loss=name, seed=0, device="cpu")
    model.fit(x, n_epochs=3, progress=False)
    assert model.loss_name == name and len(model.loss.history) == 3
    model.save(tmp_path / "m.pt")
    loaded = TS2Vec.from_checkpoint(tmp_path / "m.pt", device="cpu")
    assert loaded.loss_name == name and loaded.loss.selection == model.loss.selection
    assert loaded.loss.history == model.loss.history
    with pytest.raises(ValueError, match="hierarchical"):
        TS2Vec(2, loss="uniformly", device="cpu")
