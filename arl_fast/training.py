"""TS2Vec's training loop: data parallel over torch.distributed, mixed precision, checkpoints that survive kills.

One step draws TS2Vec's two overlapping crops and timestamp masks, runs both
views through the encoder (under autocast for bf16/fp16), computes the loss in
the dtype the encoder produced (each loss backend decides how to compute with
it), steps AdamW on fp32 master weights (through a GradScaler for fp16) and
updates the averaged encoder.

Under ``torch.distributed`` the encoder runs in DistributedDataParallel: every
epoch all ranks draw the same permutation, each takes a disjoint shard of it
(as ``DistributedSampler`` does), and the ranks step in lock-step.  A step on
R ranks with batch b is drawn as one process draws a batch of R*b: what TS2Vec
draws once per batch (the ``max_train_length`` window and the crop window)
comes from a stream all ranks share, what it draws per series (crop offsets,
masks, dropout) from each rank's own.  So no rank waits for another that drew
a longer crop, and the global batch is distributed as a single process's.
After every step's forward the ranks agree on whether to stop (Ctrl-C or
SIGTERM on any rank, a non-finite loss on any rank), so no rank is left
waiting in a collective.  Only rank 0 writes checkpoints, and it writes them
atomically: a kill at any instant leaves the previous checkpoint or the new
one, never a torn file.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import tempfile
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
CHECKPOINT_FORMATS = (1, 2)  # 1: single process, float32 only; 2: adds precision, ranks and the epoch in progress
CHECKPOINT_FORMAT = 2


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the model keeps the weights from before that step."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's stop, a preempted node) stopped training after the step in
    progress, the checkpoint written if there was one; ``signum`` is the signal (128 + it: the exit status)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)


# ---------------------------------------------------------------------------- crops and masks


class Crop(NamedTuple):
    """One draw of TS2Vec's random cropping for a batch of series of length ``ts_l``.

    View 1 covers ``[offset + eleft, offset + right)`` and view 2
    ``[offset + left, offset + eright)`` of each row; both contain the
    overlap ``[offset + left, offset + right)``, of length ``crop_l``, which
    is the last ``crop_l`` steps of view 1 and the first ``crop_l`` of view 2.
    """

    crop_l: int
    left: int
    right: int
    eleft: int
    eright: int
    offset: torch.Tensor  # (B,) long, one shift per row


def draw_crop(ts_l, batch_size, temporal_unit, host_generator, generator, device) -> Crop:
    """Draw crop bounds as TS2Vec does: the batch's window from ``host_generator``, row offsets on ``device``."""

    def randint(low, high):
        return int(torch.randint(low, high, (), generator=host_generator))

    crop_l = randint(2 ** (temporal_unit + 1), ts_l + 1)
    left = randint(0, ts_l - crop_l + 1)
    right = left + crop_l
    eleft = randint(0, left + 1)
    eright = randint(right, ts_l + 1)
    offset = torch.randint(
        -eleft, ts_l - eright + 1, (batch_size,), generator=generator, device=device
    )
    return Crop(crop_l, left, right, eleft, eright, offset)


def take_per_row(x: torch.Tensor, start: torch.Tensor, length: int) -> torch.Tensor:
    """``x[b, start[b] : start[b] + length]`` for every row ``b`` of ``x`` (B, T, C)."""
    index = start.unsqueeze(1) + torch.arange(length, device=x.device)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.size(2)))


def crop_views(x: torch.Tensor, crop: Crop) -> tuple[torch.Tensor, torch.Tensor]:
    """The two overlapping views of ``x`` (B, T, C) that ``crop`` describes."""
    view1 = take_per_row(x, crop.offset + crop.eleft, crop.right - crop.eleft)
    view2 = take_per_row(x, crop.offset + crop.left, crop.eright - crop.left)
    return view1, view2


def binomial_mask(batch_size, length, generator, device, p=0.5) -> torch.Tensor:
    """TS2Vec's timestamp mask: each timestamp kept (True) with probability ``p``."""
    return torch.rand((batch_size, length), generator=generator, device=device) < p


class TwoViews(nn.Module):
    """Both views through one encoder in a single forward, so DistributedDataParallel sees one forward per backward;
    each view's representations only over the views' overlap, the last ``overlap`` steps of view 1 and the first
    of view 2 (all the loss reads: the encoder spares its last convolution elsewhere)."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, view1, mask1, view2, mask2, generator, overlap):
        length = view1.size(1)
        return (self.encoder(view1, mask1, generator, keep=(length - overlap, length)),
                self.encoder(view2, mask2, generator, keep=(0, overlap)))


# ---------------------------------------------------------------------------- precision


def check_precision(precision, device: torch.device) -> str:
    """``precision`` if it is usable on ``device``; fp16 needs CUDA (its GradScaler and kernels)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision='fp16' needs a CUDA device (float16 training scales the loss with a CUDA GradScaler), "
            f"but the model is on {device}; use precision='bf16' on CPU"
        )
    return precision


def _autocast(device: torch.device, precision: str):
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# ---------------------------------------------------------------------------- checkpoint files


def atomic_save(obj, path) -> None:
    """``torch.save(obj, path)`` through a fsynced temporary file in the same folder and ``os.replace``,
    so a kill at any instant leaves either the previous file or the new one, never a torn one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the platform allows
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


_REQUIRED_KEYS = ("config", "net", "averaged", "n_averaged", "optimizer", "n_epochs", "n_iters", "loss_log")


def read_checkpoint(path) -> dict:
    """The content of a checkpoint written by ``TS2Vec.save`` or ``fit(checkpoint=...)``; a clear ValueError naming
    the file when it is truncated, corrupt or not ours."""
    if Path(path).is_dir():
        raise ValueError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise
    except Exception as error:  # zip reader, unpickler or weights-only guard: the file is not a checkpoint of ours
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path} is not a readable TS2Vec checkpoint: the file is truncated, corrupt or was not written by "
            f"arl_fast ({type(error).__name__}: {reason[:200]})"
        ) from None
    if (
        not isinstance(checkpoint, dict)
        or checkpoint.get("format") not in CHECKPOINT_FORMATS
        or any(key not in checkpoint for key in _REQUIRED_KEYS)
    ):
        raise ValueError(f"{path} is not a TS2Vec checkpoint written by arl_fast")
    return checkpoint


# ---------------------------------------------------------------------------- ranks


class World(NamedTuple):
    """This process's place in the training job; ``group`` carries the small CPU messages (gloo)."""

    rank: int
    size: int
    group: object


def current_world() -> World:
    """Rank and size of the initialised ``torch.distributed`` job, or a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return World(0, 1, None)
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return World(dist.get_rank(), dist.get_world_size(), group)


def rank_state(model) -> dict:
    """One rank's streams (the batch-level one is the same on every rank; the per-series one is its own), the
    loss's state and the epoch's running sums."""
    epoch = model._epoch
    return {
        "host_generator": model._host_generator.get_state(),
        "generator": model._generator.get_state(),
        "generator_device": model.device.type,
        "loss_state": model.loss.state_dict() if hasattr(model.loss, "state_dict") else None,
        "epoch_sums": None if epoch is None else {k: epoch[k] for k in ("loss_sum", "level_sum", "level_count")},
    }


def set_rank_state(model, state: dict, rank: int = 0) -> None:
    """Restore what :func:`rank_state` saved for ``rank`` into ``model``."""
    model._host_generator.set_state(state["host_generator"].cpu())
    if state["generator_device"] == model.device.type:
        model._generator.set_state(state["generator"].cpu())
    else:  # generator states do not carry across device types: reseed from the saved position, apart per rank
        model._generator.manual_seed(int(torch.randint(2**62, (), generator=model._host_generator)) + rank)
    if state["loss_state"] is not None and hasattr(model.loss, "load_state_dict"):
        model.loss.load_state_dict(state["loss_state"])
    if model._epoch is not None:
        if state.get("epoch_sums") is None:
            model._epoch = None
        else:
            model._epoch.update(state["epoch_sums"])


def _adopt_rank(model, world: World) -> None:
    """Give this rank its own per-series stream (crop offsets, masks, dropout): its saved one after a resume, else
    seeded by rank.  The batch-level stream comes from rank 0 (:func:`_sync_from_rank0`)."""
    if model._rank == world.rank:
        return
    saved = model._saved_ranks
    if saved is not None and len(saved) == world.size:
        set_rank_state(model, saved[world.rank], world.rank)
    else:
        seed = model.seed
        sequence = np.random.SeedSequence([seed, world.rank]) if seed is not None else np.random.SeedSequence()
        model._generator.manual_seed(int(sequence.generate_state(1)[0]))
        if model._epoch is not None and world.rank > 0:
            model._epoch = None
    model._rank = world.rank


@torch.no_grad()
def _sync_from_rank0(model, world: World) -> None:
    """Start every rank from rank 0's averaged encoder and its shared streams, the permutation's and the
    batch-level one (DDP syncs the online encoder)."""
    for tensor in model._averaged.state_dict().values():
        dist.broadcast(tensor, src=0)
    for generator in (model._order_generator, model._host_generator):
        state = generator.get_state()
        dist.broadcast(state, src=0, group=world.group)
        generator.set_state(state)


def _agree(world: World, *flags: int) -> list[int]:
    """Each flag's largest value over the ranks: a flag raised on any rank is raised on all of them."""
    if world.size == 1:
        return [int(flag) for flag in flags]
    tensor = torch.tensor(flags, dtype=torch.int32)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=world.group)
    return tensor.tolist()


def _gather(world: World, obj) -> list:
    if world.size == 1:
        return [obj]
    gathered = [None] * world.size
    dist.all_gather_object(gathered, obj, group=world.group)
    return gathered


def _epoch_totals(world: World, epoch: dict) -> tuple[float, list[float], list[float]]:
    """The epoch's loss and per-level sums and counts over all ranks."""
    values = [epoch["loss_sum"], *epoch["level_sum"], *epoch["level_count"]]
    if world.size > 1:
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor, group=world.group)
        values = tensor.tolist()
    n = len(epoch["level_sum"])
    return values[0], values[1 : 1 + n], values[1 + n :]


def save_checkpoint(model, path, world: World) -> None:
    """Every rank hands in its state; rank 0 writes the checkpoint atomically; all wait until it is on disk."""
    ranks = _gather(world, rank_state(model))
    if world.rank == 0:
        atomic_save(model._checkpoint(ranks), path)
    if world.size > 1:
        dist.barrier(group=world.group)


# ---------------------------------------------------------------------------- Ctrl-C and SIGTERM

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """While active, SIGINT (Ctrl-C) and SIGTERM only record a request to stop, which training honours after the
    step in progress; ``signal`` is the first one received.  Repeated signals (torchrun forwards its own) change
    nothing; other threads keep Python's handlers."""

    def __init__(self):
        self.signal = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.signal is None:
            self.signal = signum

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        return False


# ---------------------------------------------------------------------------- the loop


def _train_step(model, net, x):
    """Forward both views of batch ``x`` and return the loss and, for the hierarchical loss, its per-level values."""
    crop = draw_crop(x.size(1), x.size(0), model.temporal_unit, model._host_generator, model._generator, x.device)
    view1, view2 = crop_views(x, crop)
    mask1 = binomial_mask(*view1.shape[:2], model._generator, x.device)
    mask2 = binomial_mask(*view2.shape[:2], model._generator, x.device)
    with _autocast(x.device, model.precision):
        z1, z2 = net(view1, mask1, view2, mask2, model._generator, crop.crop_l)
    # Outside autocast: the loss backends get the encoder's dtype and choose their own accumulation.
    return model._compute_loss(z1, z2)


def _backward_and_step(model, loss):
    model._optimizer.zero_grad(set_to_none=True)
    if model._scaler is not None:
        model._scaler.scale(loss).backward()
        model._scaler.step(model._optimizer)
        model._scaler.update()
    else:
        loss.backward()
        model._optimizer.step()
    model._update_average()


def _new_epoch(model, n_series, world, batch_size, n_levels) -> dict:
    return {
        "order": torch.randperm(n_series, generator=model._order_generator),
        "step": 0,
        "world": world.size,
        "batch_size": batch_size,
        "loss_sum": 0.0,
        "level_sum": [0.0] * n_levels,
        "level_count": [0] * n_levels,
    }


def _continues(epoch, n_series, world, batch_size, n_levels) -> bool:
    """Whether a saved epoch in progress can continue on this data and this number of ranks."""
    return (
        epoch["order"].numel() == n_series
        and epoch["world"] == world.size
        and epoch["batch_size"] == batch_size
        and len(epoch["level_sum"]) == n_levels
    )


def fit(model, data: torch.Tensor, n_epochs, n_iters, progress, checkpoint, checkpoint_every) -> list[dict]:
    """Train ``model`` (a TS2Vec) on prepared series ``data`` (n, T, C) until a budget is met; see ``TS2Vec.fit``."""
    world = current_world()
    n_series = len(data)
    per_rank = n_series // world.size
    if per_rank == 0:
        raise ValueError(f"X has {n_series} usable series, fewer than the {world.size} ranks training on it")
    batch_size = min(model.batch_size, per_rank)
    per_epoch = per_rank // batch_size
    ts_l = data.size(1)
    window = model.max_train_length if model.max_train_length is not None and ts_l > model.max_train_length else None
    n_levels = (window or ts_l).bit_length()

    net: nn.Module = TwoViews(model._net)
    if world.size > 1:
        _adopt_rank(model, world)
        _sync_from_rank0(model, world)
        device_ids = [model.device.index if model.device.index is not None else torch.cuda.current_device()] \
            if model.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)

    if model._epoch is not None and not _continues(model._epoch, n_series, world, batch_size, n_levels):
        warnings.warn(f"epoch {model.n_epochs} stopped part-way with other data, batch size or number of ranks: "
                      "it starts over", stacklevel=3)
        model._epoch = None
    done_in_epoch = 0 if model._epoch is None else model._epoch["step"]
    goal = [] if n_iters is None else [n_iters]
    if n_epochs is not None:
        goal.append(model.n_iters + max(n_epochs - model.n_epochs, 0) * per_epoch - done_in_epoch)
    bar = tqdm(total=max(min(goal), model.n_iters), initial=model.n_iters, unit="it", desc="training", leave=False,
               disable=not progress or world.rank != 0)

    new_entries = []
    saved_at = None  # n_iters of the last checkpoint this call wrote
    model._net.train()
    with StopRequest() as stop, bar:
        while (n_epochs is None or model.n_epochs < n_epochs) and (n_iters is None or model.n_iters < n_iters):
            if model._epoch is None:
                model._epoch = _new_epoch(model, n_series, world, batch_size, n_levels)
            epoch = model._epoch
            shard = epoch["order"][: per_rank * world.size][world.rank :: world.size].to(model.device)
            while epoch["step"] < per_epoch and (n_iters is None or model.n_iters < n_iters):
                step = epoch["step"]
                x = data[shard[step * batch_size : (step + 1) * batch_size]]
                if window is not None:
                    start = int(torch.randint(ts_l - window + 1, (), generator=model._host_generator))
                    x = x[:, start : start + window]
                loss, levels = _train_step(model, net, x)
                values = loss.detach().float().reshape(1)
                if levels is not None:
                    values = torch.cat([values, levels.detach().float()])
                values = values.tolist()
                stop_signal, diverged = _agree(world, stop.signal or 0, not math.isfinite(values[0]))
                if diverged:
                    kept = f"; {checkpoint} keeps the last checkpoint" if checkpoint and Path(checkpoint).exists() else ""
                    on_rank = f" on rank {world.rank}" if world.size > 1 else ""
                    raise TrainingDiverged(
                        f"training diverged: the loss became non-finite ({values[0]}{on_rank}) at "
                        f"epoch {model.n_epochs}, step {step} (iteration {model.n_iters}); the model keeps the "
                        f"weights from before that step{kept}. Try a lower lr (lr={model.lr})"
                    )
                _backward_and_step(model, loss)
                epoch["loss_sum"] += values[0]
                for k, value in enumerate(values[1:]):
                    epoch["level_sum"][k] += value
                    epoch["level_count"][k] += 1
                epoch["step"] += 1
                model.n_iters += 1
                bar.update()
                if stop_signal:
                    if checkpoint is not None:
                        save_checkpoint(model, checkpoint, world)
                    where = f"; checkpoint: {checkpoint}" if checkpoint is not None else ""
                    raise TrainingInterrupted(f"training interrupted ({signal.Signals(stop_signal).name}) at "
                                              f"iteration {model.n_iters}{where}", stop_signal)
            if epoch["step"] < per_epoch:
                break  # the iteration budget ends inside this epoch: the next fit continues it
            loss_sum, level_sum, level_count = _epoch_totals(world, epoch)
            entry = {
                "epoch": model.n_epochs,
                "loss": loss_sum / (per_epoch * world.size),
                "level_losses": None if model.loss is not None else [
                    s / c for s, c in zip(level_sum, level_count) if c > 0
                ],
            }
            model.loss_log.append(entry)
            new_entries.append(entry)
            if hasattr(model.loss, "end_epoch"):
                model.loss.end_epoch()
            model.n_epochs += 1
            model._epoch = None
            bar.set_postfix(epoch=model.n_epochs, loss=f"{entry['loss']:.4f}")
            if checkpoint is not None and checkpoint_every is not None and model.n_epochs % checkpoint_every == 0:
                save_checkpoint(model, checkpoint, world)
                saved_at = model.n_iters
        if checkpoint is not None and saved_at != model.n_iters:
            save_checkpoint(model, checkpoint, world)
    return new_entries
