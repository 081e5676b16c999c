import numpy as np
import pytest
import torch

from arl_fast.losses import hierarchical_contrastive_loss, num_levels
from arl_fast.ts2vec import (
    TS2Vec,
    binomial_mask,
    centerize_vary_length_series,
    crop_views,
    draw_crop,
    split_with_nan,
)

from tiny_models import series, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def original_views(x, crop_l, left, eleft, eright, offset):
    """The views as the original TS2Vec slices them (take_per_row on numpy indices), then trims its outputs."""
    right = left + crop_l
    rows = np.arange(len(x))[:, None]
    in1 = x[rows, (offset + eleft)[:, None] + np.arange(right - eleft)]
    in2 = x[rows, (offset + left)[:, None] + np.arange(eright - left)]
    return in1, in2, in1[:, -crop_l:], in2[:, :crop_l]


@pytest.mark.parametrize("ts_l, temporal_unit", [(2, 0), (5, 0), (16, 0), (16, 2), (33, 1)])
def test_crop_views_overlap_where_the_original_does(ts_l, temporal_unit):
    host, gen = torch.Generator().manual_seed(ts_l), torch.Generator().manual_seed(1)
    # Each timestamp carries its own index, so the values name the timestamps each view holds.
    x = torch.arange(ts_l, dtype=torch.float32).view(1, ts_l, 1).repeat(6, 1, 2)
    lengths = set()
    for _ in range(300):
        crop = draw_crop(ts_l, 6, temporal_unit, host, gen, "cpu")
        assert 2 ** (temporal_unit + 1) <= crop.crop_l <= ts_l
        assert 0 <= crop.eleft <= crop.left and crop.right == crop.left + crop.crop_l <= crop.eright <= ts_l
        assert (crop.offset >= -crop.eleft).all() and (crop.offset <= ts_l - crop.eright).all()
        view1, view2 = crop_views(x, crop)
        in1, in2, out1, out2 = original_views(x.numpy(), crop.crop_l, crop.left, crop.eleft, crop.eright,
                                              crop.offset.numpy())
        np.testing.assert_array_equal(view1.numpy(), in1)
        np.testing.assert_array_equal(view2.numpy(), in2)
        overlap = (crop.offset + crop.left)[:, None] + torch.arange(crop.crop_l)
        torch.testing.assert_close(view1[:, -crop.crop_l:, 0], overlap.float())
        torch.testing.assert_close(view2[:, : crop.crop_l, 0], overlap.float())
        np.testing.assert_array_equal(out1, out2)
        lengths.add(crop.crop_l)
    assert min(lengths) == 2 ** (temporal_unit + 1) and max(lengths) == ts_l  # the whole range is drawn


def test_binomial_mask_keeps_half_and_follows_generator():
    mask = binomial_mask(64, 128, torch.Generator().manual_seed(0), "cpu")
    assert mask.dtype == torch.bool and mask.shape == (64, 128)
    assert abs(mask.float().mean().item() - 0.5) < 0.02
    torch.testing.assert_close(mask, binomial_mask(64, 128, torch.Generator().manual_seed(0), "cpu"))


def test_split_with_nan_and_centerize():
    x = np.arange(2 * 7 * 1, dtype=np.float64).reshape(2, 7, 1)
    pieces = split_with_nan(x, 3)  # lengths 3, 2, 2 padded to 3
    assert pieces.shape == (6, 3, 1)
    np.testing.assert_array_equal(pieces[:2, :, 0], x[:, :3, 0])
    assert np.isnan(pieces[2:, 2]).all() and not np.isnan(pieces[2:, :2]).any()

    y = np.full((2, 8, 1), np.nan)
    y[0, :4, 0] = [1, 2, 3, 4]  # observed at the start: moved to the middle
    y[1, 2:6, 0] = [5, 6, 7, 8]  # already centred
    centred = centerize_vary_length_series(y)
    np.testing.assert_array_equal(centred[0, 2:6, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(centred[1], y[1])


def test_fit_logs_epochs_and_level_losses():
    # Length-2 series: every crop has length 2, so every step has both levels and the epoch
    # loss is exactly the mean of the per-level means.
    model = tiny()
    log = model.fit(series(8, 2), n_epochs=3, progress=False)
    assert [entry["epoch"] for entry in log] == [0, 1, 2]
    assert model.n_epochs == 3 and model.n_iters == 3
    for entry in log:
        assert len(entry["level_losses"]) == num_levels(2)
        assert entry["loss"] == pytest.approx(np.mean(entry["level_losses"]), rel=1e-5)
    assert model.loss_log == log
    log = model.fit(series(8, 40), n_epochs=5, progress=False)
    assert [entry["epoch"] for entry in log] == [3, 4]  # budgets count from the model's creation
    assert all(1 <= len(e["level_losses"]) <= num_levels(40) for e in log)


def test_default_budget_is_ts2vecs():
    model = tiny(batch_size=16)
    model.fit(series(32, 4), progress=False)
    assert model.n_iters == 200 and model.n_epochs == 100


def test_iteration_budget_stops_mid_epoch():
    model = tiny()
    log = model.fit(series(24, 16), n_iters=7, progress=False)  # 3 iterations per epoch
    assert model.n_iters == 7 and model.n_epochs == 2 and len(log) == 2


def test_same_seed_same_model_and_global_rng_untouched():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    encodings = []
    for seed in (3, 3, 4):
        model = tiny(seed=seed)
        model.fit(series(), n_iters=6, progress=False)
        encodings.append(model.encode(series(seed=1)))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(encodings[0], encodings[1])
    assert not np.allclose(encodings[0], encodings[2])


def test_training_reduces_the_loss():
    rng = np.random.default_rng(0)
    frequency = rng.choice([0.05, 0.1, 0.2], size=(16, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(16, 1, 1))
    x = np.sin(2 * np.pi * frequency * np.arange(32)[None, :, None] + phase)
    x = (x + 0.1 * rng.standard_normal((16, 32, 2))).astype(np.float32)
    model = TS2Vec(2, output_dims=16, hidden_dims=16, depth=2, lr=1e-2, device="cpu", seed=0)
    log = model.fit(x, n_epochs=30, progress=False)
    assert np.mean([e["loss"] for e in log[-5:]]) < 0.9 * np.mean([e["loss"] for e in log[:5]])


def test_nan_series():
    x = series(10, 24)
    x[0, 18:] = np.nan  # variable length
    x[1, :5] = np.nan
    x[2, 7, 1] = np.nan  # one missing value
    x[3] = np.nan  # nothing observed: dropped from training
    model = tiny()
    log = model.fit(x, n_epochs=4, progress=False)
    assert all(np.isfinite(e["loss"]) for e in log)
    assert np.isfinite(model.encode(x)).all()
    assert np.isfinite(model.encode(x, "full_series")).all()
    with pytest.raises(ValueError, match="all NaN"):
        tiny().fit(np.full((4, 8, 2), np.nan), n_iters=1, progress=False)


def test_max_train_length_splits_long_series():
    model = tiny(max_train_length=16)
    prepared = model._prepare_train(series(4, 50))  # 3 sections of 17 steps, then a random 16-step window
    assert prepared.shape == (12, 17, 2)
    log = model.fit(series(4, 50), n_epochs=2, progress=False)
    assert all(len(e["level_losses"]) <= num_levels(16) for e in log)


def test_encode_shapes_and_windows():
    model = tiny()
    model.fit(series(), n_iters=2, progress=False)
    x = series(5, 11, seed=2)
    per_step = model.encode(x)
    assert per_step.shape == (5, 11, 8) and per_step.dtype == np.float32
    full = model.encode(x, encoding_window="full_series")
    assert full.shape == (5, 8)
    np.testing.assert_allclose(full, per_step.max(axis=1), rtol=1e-6)
    for window in (1, 3, 4):
        pooled = model.encode(x, encoding_window=window, batch_size=2)
        assert pooled.shape == (5, 11, 8)
        padded = np.pad(per_step, ((0, 0), (window // 2, window), (0, 0)), constant_values=-np.inf)
        expected = np.stack([padded[:, t : t + window].max(axis=1) for t in range(11)], axis=1)
        np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)  # batch size 2: other kernels
    np.testing.assert_allclose(model.encode(x, batch_size=1), per_step, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="encoding_window"):
        model.encode(x, encoding_window="max")
    with pytest.raises(ValueError, match="to_ts2vec"):
        model.encode(x.transpose(0, 2, 1))  # aeon's layout
    with pytest.raises(ValueError, match=r"\(n_series, n_timestamps, n_channels\)"):
        model.encode(x[0])


def test_encoder_is_the_average_of_the_online_weights():
    model = tiny()
    snapshots = [[p.detach().clone() for p in model._net.parameters()]]
    for _ in range(3):
        model.fit(series(), n_iters=model.n_iters + 1, progress=False)
        snapshots.append([p.detach().clone() for p in model._net.parameters()])
    for averaged, *history in zip(model._averaged.parameters(), *snapshots):
        torch.testing.assert_close(averaged, torch.stack(history).mean(0))


def test_save_load_round_trip_and_resume(tmp_path):
    x = series(8, 16)
    straight = tiny()
    straight.fit(x, n_iters=8, progress=False)

    first = tiny()
    first.fit(x, n_iters=4, progress=False)  # 4 iterations = 4 whole epochs of one batch
    first.save(tmp_path / "model.pt")
    restored = TS2Vec.from_checkpoint(tmp_path / "model.pt", device="cpu")
    np.testing.assert_array_equal(restored.encode(x), first.encode(x))
    assert (restored.n_epochs, restored.n_iters, restored.loss_log) == (4, 4, first.loss_log)

    restored.fit(x, n_iters=8, progress=False)
    np.testing.assert_array_equal(restored.encode(x), straight.encode(x))
    assert restored.loss_log == straight.loss_log

    into = tiny(seed=9).load(tmp_path / "model.pt")  # an existing instance, like the original's load
    np.testing.assert_array_equal(into.encode(x), first.encode(x))
    with pytest.raises(ValueError, match="hidden_dims=8"):
        TS2Vec(2, output_dims=8, hidden_dims=16, depth=1, device="cpu").load(tmp_path / "model.pt")
    (tmp_path / "other.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="other.pt is not a readable TS2Vec checkpoint"):
        TS2Vec.from_checkpoint(tmp_path / "other.pt")


def test_callable_loss_and_end_epoch():
    calls = {"forward": 0, "end_epoch": 0}

    class Loss:
        def __call__(self, z1, z2):
            assert z1.shape == z2.shape and z1.shape[2] == 8
            calls["forward"] += 1
            return hierarchical_contrastive_loss(z1, z2)

        def end_epoch(self):
            calls["end_epoch"] += 1

    model = tiny(loss=Loss())
    log = model.fit(series(16, 16), n_epochs=3, progress=False)
    assert calls == {"forward": 6, "end_epoch": 3}
    assert all(entry["level_losses"] is None for entry in log)

    plain = tiny(loss=lambda z1, z2: hierarchical_contrastive_loss(z1, z2))
    reference = tiny()
    plain.fit(series(), n_iters=3, progress=False)
    reference.fit(series(), n_iters=3, progress=False)
    np.testing.assert_allclose(plain.encode(series()), reference.encode(series()), rtol=1e-5, atol=1e-6)


def test_adaptive_loss_trains_and_round_trips(tmp_path):
    model = tiny(loss="adaptive")
    model.fit(series(16, 32), n_epochs=3, progress=False)
    assert len(model.loss.history) == 3
    model.save(tmp_path / "adaptive.pt")
    restored = TS2Vec.from_checkpoint(tmp_path / "adaptive.pt", device="cpu")
    assert restored.loss_name == "adaptive" and restored.loss.history == model.loss.history
    model.fit(series(16, 32), n_epochs=5, progress=False)
    restored.fit(series(16, 32), n_epochs=5, progress=False)
    np.testing.assert_array_equal(restored.encode(series()), model.encode(series()))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="loss"):
        tiny(loss="flat")
    with pytest.raises(TypeError, match="loss"):
        tiny(loss=3)
    with pytest.raises(ValueError, match="batch_size"):
        tiny(batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        tiny(lr=-1.0)
    with pytest.raises(ValueError, match="device"):
        tiny(device="gpu0")
    with pytest.raises(ValueError, match="at least 4 timestamps"):
        tiny(temporal_unit=1).fit(series(4, 3), n_iters=1, progress=False)
    with pytest.raises(TypeError, match="scalar"):
        tiny(loss=lambda z1, z2: z1.sum(dim=1)).fit(series(), n_iters=1, progress=False)
    with pytest.raises(TypeError, match="n_iters"):
        tiny().fit(series(), n_iters=1.5)
    with pytest.raises(TypeError, match="lists"):
        tiny().fit([np.zeros((2, 5)), np.zeros((2, 7))])
    custom = tiny(loss=lambda z1, z2: hierarchical_contrastive_loss(z1, z2))
    custom.save(tmp_path / "custom.pt")
    with pytest.raises(ValueError, match="custom loss"):
        TS2Vec.from_checkpoint(tmp_path / "custom.pt")
    assert TS2Vec.from_checkpoint(tmp_path / "custom.pt", loss="hierarchical", device="cpu").loss_name == "hierarchical"


def test_unknown_backend_and_missing_cuda_fail_at_construction():
    with pytest.raises(ValueError, match=r"unknown backend 'bogus'; available: auto, reference"):
        TS2Vec(input_dims=2, backend="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device='cuda' but this machine has no usable CUDA device"):
            TS2Vec(input_dims=2, device="cuda")
