"""The training loop in one process: checkpoints (atomic, periodic, resumable inside an epoch), mixed precision,
and the faults a new user meets: inf in the data, a diverging run, a malformed .ts file, a foreign checkpoint."""

import os
import pickle

import numpy as np
import pytest
import torch

from arl_fast import TS2Vec, training
from arl_fast.cli import main
from arl_fast.data import load_uea
from arl_fast.losses import hierarchical_contrastive_loss
from arl_fast.training import TrainingDiverged

from tiny_models import series, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CLI = ["--repr-dims", "8", "--hidden-dims", "8", "--depth", "1", "--threads", "1", "--quiet", "--device", "cpu"]


def assert_same_training_state(a: TS2Vec, b: TS2Vec):
    for name in ("_net", "_averaged"):
        for (key, p), q in zip(getattr(a, name).state_dict().items(), getattr(b, name).state_dict().values()):
            assert torch.equal(p, q), f"{name}.{key} differs"
    assert (a.n_epochs, a.n_iters, a.loss_log) == (b.n_epochs, b.n_iters, b.loss_log)


# ---------------------------------------------------------------------------- checkpoints


def test_checkpoint_every_writes_at_those_epochs_and_at_the_end(tmp_path, monkeypatch):
    written = []
    real_save = training.atomic_save

    def spy(obj, path):
        written.append((obj["n_epochs"], obj["n_iters"]))
        real_save(obj, path)

    monkeypatch.setattr(training, "atomic_save", spy)
    path = tmp_path / "ck.pt"
    model = tiny()
    model.fit(series(16), n_epochs=5, checkpoint=path, checkpoint_every=2, progress=False)  # 2 steps per epoch
    assert written == [(2, 4), (4, 8), (5, 10)]
    assert os.listdir(tmp_path) == ["ck.pt"]  # no temporary file left behind
    assert_same_training_state(TS2Vec.from_checkpoint(path, device="cpu"), model)


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    model = tiny()
    model.fit(series(), n_epochs=1, checkpoint=path, progress=False)
    before = path.read_bytes()
    real_torch_save = torch.save

    def torn(obj, f):  # writes half a checkpoint, then the process "dies"
        real_torch_save(obj, f)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(KeyboardInterrupt):
        model.fit(series(), n_epochs=2, checkpoint=path, progress=False)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.pt"]


def test_resume_inside_an_epoch_matches_an_uninterrupted_run(tmp_path):
    x = series(24, 20)  # 3 steps per epoch
    straight = tiny(loss="adaptive")
    straight.fit(x, n_iters=11, progress=False)

    first = tiny(loss="adaptive")
    first.fit(x, n_iters=4, checkpoint=tmp_path / "ck.pt", progress=False)  # stops inside epoch 1
    assert first.n_epochs == 1 and first._epoch["step"] == 1
    resumed = TS2Vec.from_checkpoint(tmp_path / "ck.pt", device="cpu")
    assert resumed._epoch["step"] == 1
    resumed.fit(x, n_iters=11, progress=False)
    assert_same_training_state(resumed, straight)
    assert resumed.loss.history == straight.loss.history
    np.testing.assert_array_equal(resumed.encode(x), straight.encode(x))


def test_format_1_checkpoints_still_load(tmp_path):
    model = tiny()
    model.fit(series(), n_epochs=2, progress=False)
    state = model._checkpoint([training.rank_state(model)])
    rank = state.pop("ranks")[0]
    del state["order_generator"], state["epoch"], state["scaler"], rank["epoch_sums"]
    state["config"] = {k: v for k, v in state["config"].items() if k != "precision"}
    torch.save({**state, **rank, "format": 1}, tmp_path / "old.pt")
    loaded = TS2Vec.from_checkpoint(tmp_path / "old.pt", device="cpu")
    assert loaded.precision == "fp32" and loaded.n_epochs == 2
    np.testing.assert_array_equal(loaded.encode(series()), model.encode(series()))
    loaded.fit(series(), n_epochs=3, progress=False)  # and training continues


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "foreign pickle", "foreign dict"])
def test_unreadable_checkpoints_name_the_file(tmp_path, damage):
    path = tmp_path / "ck.pt"
    tiny().save(path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("not a checkpoint")
    elif damage == "foreign pickle":
        torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a module: refused by the weights-only loader
    else:
        torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ValueError, match=f"{path}.*(not a readable|not a TS2Vec checkpoint)") as error:
        TS2Vec.from_checkpoint(path, device="cpu")
    assert not isinstance(error.value.__cause__, pickle.UnpicklingError)
    with pytest.raises(ValueError, match=str(path)):
        tiny().load(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        TS2Vec.from_checkpoint(tmp_path / "missing.pt")


def test_cli_resume_of_a_truncated_checkpoint_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "ck.pt"
    assert main(["train", "--iters", "2", "--out", str(path), *TINY_CLI]) == 0
    path.write_bytes(path.read_bytes()[:1000])
    assert main(["train", "--resume", str(path), "--iters", "4", *TINY_CLI]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "truncated" in error and "Traceback" not in error
    assert path.stat().st_size == 1000  # left as it was
    assert main(["train", "--resume", "--iters", "4", *TINY_CLI]) == 2
    assert "--out" in capsys.readouterr().err


def test_checkpoint_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="checkpoint_every needs a checkpoint"):
        tiny().fit(series(), n_iters=1, checkpoint_every=1)
    with pytest.raises(ValueError, match="checkpoint_every"):
        tiny().fit(series(), n_iters=1, checkpoint=tmp_path / "ck.pt", checkpoint_every=0)
    with pytest.raises(ValueError, match="is a directory"):
        tiny().fit(series(), n_iters=1, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        tiny().fit(series(), n_iters=1, checkpoint=tmp_path / "no" / "ck.pt")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- faults in data and training


def test_inf_in_the_data_is_rejected_before_training(tmp_path):
    x = series()
    x[2, 5, 1] = np.inf
    x[3, 0, 0] = np.nan  # NaN stays a missing value
    model = tiny()
    with pytest.raises(ValueError, match=r"X holds 1 infinite.*series 2, timestamp 5, channel 1.*NaN marks"):
        model.fit(x, n_iters=3, checkpoint=tmp_path / "ck.pt", progress=False)
    assert model.n_iters == 0 and not (tmp_path / "ck.pt").exists()
    with pytest.raises(ValueError, match="infinite"):
        model.encode(-x)


def test_divergence_stops_at_the_first_non_finite_loss_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "ck.pt"
    model = tiny()
    model.fit(series(16), n_epochs=2, checkpoint=path, checkpoint_every=1, progress=False)
    saved = path.read_bytes()
    model._optimizer.param_groups[0]["lr"] = 1e8
    with pytest.raises(TrainingDiverged, match=r"non-finite \(nan\) at epoch 2, step 1 \(iteration 5\).*lower lr"):
        model.fit(series(16), n_epochs=6, checkpoint=path, checkpoint_every=1, progress=False)
    assert path.read_bytes() == saved
    assert model.n_iters == 5 and all(torch.isfinite(p).all() for p in model._net.parameters())
    assert len(model.loss_log) == 2  # no NaN epochs logged


def test_cli_reports_divergence_without_overwriting(tmp_path, capsys):
    path = tmp_path / "ck.pt"
    assert main(["train", "--lr", "1e8", "--epochs", "3", "--out", str(path), *TINY_CLI]) == 1
    error = capsys.readouterr().err
    assert "diverged" in error and "epoch 0, step 1" in error and "Traceback" not in error
    assert not path.exists()


def test_malformed_ts_file_is_named(tmp_path, capsys):
    folder = tmp_path / "Broken"
    folder.mkdir()
    header = "@problemName Broken\n@timeStamps false\n@univariate true\n@classLabel true a b\n@data\n"
    (folder / "Broken_TRAIN.ts").write_text(header)  # no series at all
    (folder / "Broken_TEST.ts").write_text(header + "1,2,3:a\n")
    with pytest.raises(ValueError, match=r"could not parse .*Broken_TRAIN\.ts.*holds no series"):
        load_uea("Broken", tmp_path, download=False)
    (folder / "Broken_TRAIN.ts").write_text(header + "1,2,3:a\n1,oops,3:b\n")
    with pytest.raises(ValueError, match=r"could not parse .*Broken_TRAIN\.ts.*oops"):
        load_uea("Broken", tmp_path, download=False)
    out = tmp_path / "model.pt"
    assert main(["train", "--dataset", "Broken", "--data-dir", str(tmp_path), "--out", str(out), *TINY_CLI]) == 2
    assert "Broken_TRAIN.ts" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------------------- precision


def test_bf16_trains_with_fp32_weights_and_bf16_loss_inputs(tmp_path):
    seen = []

    def loss(z1, z2):
        seen.append(z1.dtype)
        return hierarchical_contrastive_loss(z1, z2)

    x = series(16, 24)
    model = tiny(loss=loss, precision="bf16")
    log = model.fit(x, n_epochs=3, progress=False)
    assert set(seen) == {torch.bfloat16} and all(np.isfinite(e["loss"]) for e in log)
    assert all(p.dtype == torch.float32 for p in model._net.parameters())
    assert all(p.dtype == torch.float32 for p in model._averaged.parameters())
    assert model.encode(x).dtype == np.float32

    fp32 = tiny()
    fp32.fit(x, n_epochs=3, progress=False)
    for p, q in zip(model._net.parameters(), fp32._net.parameters()):  # bf16 changes the run, not its scale
        assert not torch.equal(p, q)
        torch.testing.assert_close(p, q, atol=0.05, rtol=0.1)

    hierarchical = tiny(precision="bf16")  # through the loss backends
    hierarchical.fit(x, n_epochs=2, checkpoint=tmp_path / "bf16.pt", progress=False)
    restored = TS2Vec.from_checkpoint(tmp_path / "bf16.pt", device="cpu")
    assert restored.precision == "bf16"
    hierarchical.fit(x, n_epochs=4, progress=False)
    restored.fit(x, n_epochs=4, progress=False)
    assert_same_training_state(restored, hierarchical)


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision must be 'fp32', 'bf16' or 'fp16', got 'fp8'"):
        tiny(precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16.*CUDA.*bf16"):
            tiny(precision="fp16")
        with pytest.raises(ValueError, match="fp16.*CUDA"):
            TS2Vec(2, precision="fp16")  # device "auto" is the CPU here


# ---------------------------------------------------------------------------- the step's two views


def test_two_views_give_the_overlap_of_full_forwards():
    """The training step encodes each view only over the crops' overlap: the same values and encoder
    gradients (float64) as full forwards of both views cut to the overlap, as TS2Vec computes them."""
    torch.manual_seed(0)
    encoder = tiny(seed=0)._net.double().train()
    x = torch.randn(3, 40, encoder.input_dims, dtype=torch.float64)
    host = torch.Generator().manual_seed(5)
    crop = training.draw_crop(40, 3, 0, host, torch.Generator().manual_seed(6), x.device)
    view1, view2 = training.crop_views(x, crop)
    masks = [training.binomial_mask(*v.shape[:2], torch.Generator().manual_seed(7), x.device) for v in (view1, view2)]
    results = []
    for pruned in (True, False):
        encoder.zero_grad()
        generator = torch.Generator().manual_seed(8)
        if pruned:
            z1, z2 = training.TwoViews(encoder)(view1, masks[0], view2, masks[1], generator, crop.crop_l)
        else:
            z1 = encoder(view1, masks[0], generator)[:, -crop.crop_l :]
            z2 = encoder(view2, masks[1], generator)[:, : crop.crop_l]
        hierarchical_contrastive_loss(z1, z2, backend="reference").backward()
        results.append((z1.detach(), z2.detach(), [p.grad.clone() for p in encoder.parameters()]))
    (a1, a2, grads_a), (b1, b2, grads_b) = results
    assert a1.shape == (3, crop.crop_l, encoder.output_dims) and a2.shape == a1.shape
    torch.testing.assert_close(a1, b1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a2, b2, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
