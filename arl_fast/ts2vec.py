"""The TS2Vec model: training by contrasting two overlapping crops, with a pluggable loss.

Follows TS2Vec's training loop (random cropping, timestamp masking,
``max_train_length`` splitting, NaN handling, AdamW, an averaged encoder for
inference) without its per-step overheads: crops, masks and dropout are drawn
by the model's own seeded generators on the training device and the batch is
gathered there.  The loop itself (data parallel training, mixed precision,
checkpoints) lives in :mod:`arl_fast.training`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import encoding, training
from .encoder import TSEncoder
from .backends import resolve_backend
from .encoding import check_mask
from .losses import resolution_losses
from .training import (  # noqa: F401  (re-exported: the crop and mask helpers of TS2Vec's training step)
    Crop,
    TrainingDiverged,
    binomial_mask,
    crop_views,
    draw_crop,
    take_per_row,
)

_ARCHITECTURE = ("input_dims", "output_dims", "hidden_dims", "depth", "kernel_size")


def split_with_nan(x: np.ndarray, sections: int) -> np.ndarray:
    """Cut series (n, T, C) into ``sections`` pieces along time, stacked as series, NaN-padded to one length."""
    pieces = np.array_split(x, sections, axis=1)
    length = pieces[0].shape[1]
    padded = [
        np.pad(p, ((0, 0), (0, length - p.shape[1]), (0, 0)), constant_values=np.nan) for p in pieces
    ]
    return np.concatenate(padded, axis=0)


def centerize_vary_length_series(x: np.ndarray) -> np.ndarray:
    """Shift each series (n, T, C) so its observed span sits in the middle, NaN padding split on both sides."""
    observed = ~np.isnan(x).all(axis=-1)
    prefix = np.argmax(observed, axis=1)
    suffix = np.argmax(observed[:, ::-1], axis=1)
    shift = (prefix + suffix) // 2 - prefix
    columns = (np.arange(x.shape[1])[None, :] - shift[:, None]) % x.shape[1]
    return x[np.arange(x.shape[0])[:, None], columns]


def _resolve_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}") from error
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device={device!r} but this machine has no usable CUDA device; available: 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(f"device={device!r} but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
    elif resolved.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return resolved


def _check_int(name, value, lowest):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return int(value)


def _check_series(name, x, input_dims) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, list):
        raise TypeError(
            f"{name} must be an array (n, T, C); convert variable-length lists with arl_fast.data.to_ts2vec"
        )
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (n_series, n_timestamps, n_channels), got {x.shape}")
    if x.shape[2] != input_dims:
        raise ValueError(
            f"{name} has {x.shape[2]} channels on its last axis but the model expects input_dims={input_dims}; "
            "TS2Vec takes (n, T, C): convert aeon's (n, C, T) with arl_fast.data.to_ts2vec"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    infinite = np.isinf(x)
    if infinite.any():
        series, step, channel = np.argwhere(infinite)[0]
        raise ValueError(
            f"{name} holds {int(infinite.sum())} infinite values, the first at series {series}, timestamp {step}, "
            f"channel {channel}: NaN marks a missing value, but inf is not a value TS2Vec can train on or encode"
        )
    return x


class TS2Vec:
    """TS2Vec (Yue et al., 2022) with a pluggable contrastive loss.

    Series are arrays of shape ``(n_series, n_timestamps, n_channels)``, as
    in TS2Vec; missing values are NaN (variable-length series are
    NaN-padded).  aeon's ``(n_cases, n_channels, n_timepoints)`` converts
    with :func:`arl_fast.data.to_ts2vec`.

    ``loss`` is ``"hierarchical"`` (TS2Vec's loss, the default),
    ``"adaptive"`` (:class:`arl_fast.AdaptiveResolutionLoss`) or any callable
    ``(z1, z2) -> scalar tensor``; a loss with an ``end_epoch()`` method has
    it called after every epoch.  ``seed`` fixes the weights, the crops, the
    masks and dropout, so the same seed trains the same model twice on CPU.
    The defaults are those TS2Vec trains with (hidden 64, output 320,
    depth 10, kernel 3, AdamW at lr 1e-3, batch size 8).

    ``precision`` is ``"fp32"``, ``"bf16"`` (autocast on CPU or CUDA) or
    ``"fp16"`` (autocast and a GradScaler, CUDA only); weights, optimizer
    state and the averaged encoder stay fp32, and ``encode`` runs in fp32.
    When ``torch.distributed`` is initialised, ``fit`` trains data parallel
    (see :meth:`fit`); ``batch_size`` is then the batch of each rank.
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int = 320,
        hidden_dims: int = 64,
        depth: int = 10,
        kernel_size: int = 3,
        *,
        loss: str | Callable = "hierarchical",
        temporal_unit: int = 0,
        backend: str = "auto",
        lr: float = 1e-3,
        batch_size: int = 8,
        max_train_length: int | None = None,
        device="auto",
        seed: int | None = None,
        precision: str = "fp32",
    ):
        self.temporal_unit = _check_int("temporal_unit", temporal_unit, 0)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if max_train_length is not None:
            max_train_length = _check_int("max_train_length", max_train_length, 2 ** (self.temporal_unit + 1))
        self.max_train_length = max_train_length
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise TypeError(f"lr must be a positive number, got {lr!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr = float(lr)
        self.device = _resolve_device(device)
        resolve_backend(backend, self.device)  # a ValueError naming the backends available, now rather than at fit
        self.backend = backend
        if seed is not None:
            seed = _check_int("seed", seed, 0)
        self.seed = seed

        self.precision = training.check_precision(precision, self.device)

        seeds = np.random.SeedSequence(seed).generate_state(5)
        init_seed, host_seed, device_seed, loss_seed, order_seed = (int(s) for s in seeds)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self._net = TSEncoder(input_dims, output_dims, hidden_dims, depth, kernel_size)
        self._net.to(self.device).train()  # master weights stay fp32 whatever the precision
        self._averaged = copy.deepcopy(self._net).eval().requires_grad_(False)
        self._n_averaged = 1
        self._optimizer = torch.optim.AdamW(self._net.parameters(), lr=self.lr)
        self._scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        # Streams (see arl_fast.training): the epoch's permutation and what is drawn once per batch (the
        # max_train_length window, the crop window) are shared by all ranks; what is drawn per series (crop
        # offsets, masks, dropout) is this rank's own.
        self._order_generator = torch.Generator().manual_seed(order_seed)
        self._host_generator = torch.Generator().manual_seed(host_seed)
        self._generator = torch.Generator(device=self.device).manual_seed(device_seed)
        self._rank = 0  # the rank whose per-series stream _generator holds
        self._saved_ranks = None  # every rank's streams from a loaded checkpoint
        self._epoch = None  # the epoch in progress, when training stopped inside one

        self.loss_name, self.loss = self._make_loss(loss, int(loss_seed))
        self._config = dict(
            input_dims=input_dims, output_dims=output_dims, hidden_dims=hidden_dims, depth=depth,
            kernel_size=kernel_size, loss=self.loss_name if self.loss_name != "custom" else None,
            temporal_unit=self.temporal_unit, backend=backend, lr=self.lr, batch_size=self.batch_size,
            max_train_length=max_train_length, seed=seed, precision=self.precision,
        )
        self.n_epochs = 0
        self.n_iters = 0
        self.loss_log: list[dict] = []

    def _make_loss(self, loss, loss_seed):
        if isinstance(loss, str):
            if loss == "hierarchical":
                return "hierarchical", None
            from .adaptive import AdaptiveResolutionLoss  # "adaptive", "adaptive@T", "uniform", "finest"

            try:
                module = AdaptiveResolutionLoss.from_name(
                    loss, temporal_unit=self.temporal_unit, seed=loss_seed % 2**32, backend=self.backend
                )
            except ValueError as error:
                raise ValueError(f"{error}; TS2Vec also takes 'hierarchical' or a callable (z1, z2) -> loss") from None
            return loss, module.to(self.device)
        if not callable(loss):
            raise TypeError(f"loss must be 'hierarchical', 'adaptive' or a callable (z1, z2) -> loss, got {loss!r}")
        if isinstance(loss, torch.nn.Module):
            loss.to(self.device)
        return "custom", loss

    @property
    def input_dims(self) -> int:
        return self._config["input_dims"]

    @property
    def output_dims(self) -> int:
        return self._config["output_dims"]

    # ------------------------------------------------------------------ training

    def _prepare_train(self, x: np.ndarray) -> torch.Tensor:
        x = x.astype(np.float32, copy=False)
        if self.max_train_length is not None:
            sections = x.shape[1] // self.max_train_length
            if sections >= 2:
                x = split_with_nan(x, sections)
        temporal_missing = np.isnan(x).all(axis=-1).any(axis=0)
        if temporal_missing[0] or temporal_missing[-1]:
            x = centerize_vary_length_series(x)
        x = x[~np.isnan(x).all(axis=(1, 2))]
        if len(x) == 0:
            raise ValueError("X has no series with an observed value: every series is all NaN")
        shortest = 2 ** (self.temporal_unit + 1)
        if x.shape[1] < shortest:
            raise ValueError(
                f"series must have at least {shortest} timestamps for temporal_unit={self.temporal_unit}, "
                f"got {x.shape[1]}"
            )
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def _compute_loss(self, z1, z2):
        """The loss to backpropagate and, for the hierarchical loss, its per-level values."""
        if self.loss is None:
            levels = resolution_losses(z1, z2, temporal_unit=self.temporal_unit, backend=self.backend)
            return levels.mean(), levels
        loss = self.loss(z1, z2)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"the loss must return a scalar tensor, got {type(loss).__name__}")
        return loss.reshape(()), None

    @torch.no_grad()
    def _update_average(self):
        """Stochastic weight averaging of the online encoder into the averaged one (as AveragedModel)."""
        weight = 1.0 / (self._n_averaged + 1)
        torch._foreach_lerp_(list(self._averaged.parameters()), list(self._net.parameters()), weight)
        self._n_averaged += 1

    def fit(
        self,
        X,
        n_epochs: int | None = None,
        n_iters: int | None = None,
        progress: bool = True,
        *,
        checkpoint=None,
        checkpoint_every: int | None = None,
    ) -> list[dict]:
        """Train on series ``X`` of shape (n_series, n_timestamps, n_channels), NaN for missing values.

        Training stops when the model's epoch count reaches ``n_epochs`` or its
        iteration count reaches ``n_iters`` (counted since the model was
        created, so a loaded checkpoint resumes where it stopped, even inside
        an epoch).  Without either, TS2Vec's budget applies: 200 iterations,
        or 600 when ``X`` has more than 100,000 values.  Returns the log
        entries of the epochs completed by this call: ``{"epoch", "loss",
        "level_losses"}``, where ``level_losses`` is the mean loss per level
        (finest first) for the hierarchical loss and None otherwise.

        ``checkpoint`` (a path) is written atomically every
        ``checkpoint_every`` epochs (None: only at the end), at the end, and
        when Ctrl-C or SIGTERM interrupts training: the step in progress
        finishes, the checkpoint is written, then
        :class:`arl_fast.training.TrainingInterrupted` (a KeyboardInterrupt)
        is raised.  A
        non-finite loss raises :class:`arl_fast.training.TrainingDiverged`
        before its step is taken, leaving the last checkpoint as it was.

        Under ``torch.distributed`` (e.g. ``torchrun``; gloo on CPU, NCCL on
        CUDA) every rank calls ``fit`` with the same ``X``: each epoch's
        shared permutation is split into disjoint shards, one per rank,
        gradients are averaged by DistributedDataParallel, the budgets count
        global optimizer steps, and only rank 0 writes the checkpoint and
        shows progress.
        """
        if n_epochs is not None:
            n_epochs = _check_int("n_epochs", n_epochs, 0)
        if n_iters is not None:
            n_iters = _check_int("n_iters", n_iters, 0)
        if checkpoint_every is not None:
            checkpoint_every = _check_int("checkpoint_every", checkpoint_every, 1)
            if checkpoint is None:
                raise ValueError("checkpoint_every needs a checkpoint path to write to: pass checkpoint=PATH")
        if checkpoint is not None:
            if not isinstance(checkpoint, (str, Path)):
                raise TypeError(f"checkpoint must be a file path, got {type(checkpoint).__name__}")
            if Path(checkpoint).is_dir():
                raise ValueError(f"checkpoint {checkpoint} is a directory; give a file path such as {checkpoint}/model.pt")
            if not Path(checkpoint).parent.is_dir():
                raise ValueError(f"checkpoint {checkpoint}: folder {Path(checkpoint).parent} does not exist")
        x = _check_series("X", X, self.input_dims)
        if n_epochs is None and n_iters is None:
            n_iters = 200 if x.size <= 100_000 else 600
        data = self._prepare_train(x)
        return training.fit(self, data, n_epochs, n_iters, progress, checkpoint, checkpoint_every)

    # ------------------------------------------------------------------ inference

    def encode(
        self,
        X,
        encoding_window: str | int | None = None,
        *,
        causal: bool = False,
        sliding_length: int | None = None,
        sliding_padding: int = 0,
        mask: str | None = None,
        batch_size: int | None = None,
        prune: bool = True,
        progress: bool = False,
    ) -> np.ndarray:
        """Representations of series ``X`` (n_series, n_timestamps, n_channels) from the averaged encoder.

        ``encoding_window=None`` gives one vector per timestamp, (n, T, output_dims);
        ``"full_series"`` max-pools over the whole series, (n, output_dims);
        an int ``w`` max-pools over a centred window of ``w`` steps, (n, T, output_dims);
        ``"multiscale"`` concatenates max-pools over windows of ``2**(k+1) + 1`` steps, k = 0, 1, ...
        while ``2**k + 1`` is shorter than the series (or the sliding window).

        ``sliding_length=s`` encodes each window ``[t - sliding_padding, t + s + (0 if causal else
        sliding_padding))``, t = 0, s, 2s, ..., on its own, NaN-padded outside the series, and keeps the
        outputs of ``[t, t + s)`` (pooled within the window first); the result is cut to the series' length.
        ``causal=True, sliding_length=1, sliding_padding=200`` is TS2Vec's forecasting encode.  Windows are
        batched, ``batch_size`` per forward pass (default: about 65,536 window steps); without sliding,
        ``batch_size`` counts series (default: 4 x the training batch size).  ``prune=False`` computes every
        position of every window instead of the pruned computation (same values up to float rounding).

        ``mask`` is ``"all_true"`` (the default: every timestamp seen), ``"all_false"`` or ``"mask_last"``
        (the last timestamp of each window, or of each series without sliding, masked in the hidden space, as
        TS2Vec's anomaly detection needs).  ``progress`` shows a bar over a long sliding encode.
        """
        x = _check_series("X", X, self.input_dims)
        if encoding_window is not None and encoding_window not in ("full_series", "multiscale"):
            if isinstance(encoding_window, str):
                raise ValueError(
                    f"encoding_window must be None, 'full_series', 'multiscale' or an int, got {encoding_window!r}"
                )
            encoding_window = _check_int("encoding_window", encoding_window, 1)
        mask = check_mask(mask)
        if not isinstance(causal, (bool, np.bool_)):
            raise TypeError(f"causal must be True or False, got {causal!r}")
        sliding_padding = _check_int("sliding_padding", sliding_padding, 0)
        if batch_size is not None:
            batch_size = _check_int("batch_size", batch_size, 1)
        if sliding_length is None:
            if causal or sliding_padding:
                raise ValueError("causal and sliding_padding apply to sliding windows: give sliding_length too "
                                 "(e.g. causal=True, sliding_length=1, sliding_padding=200)")
            batch_size = batch_size or 4 * self.batch_size
        else:
            sliding_length = _check_int("sliding_length", sliding_length, 1)
        return encoding.encode(
            self._averaged, x, encoding_window, causal=bool(causal), sliding_length=sliding_length,
            sliding_padding=sliding_padding, mask=mask, batch_size=batch_size, device=self.device,
            prune=bool(prune), progress=progress,
        )

    # ------------------------------------------------------------------ checkpoints

    def save(self, path) -> None:
        """Save everything needed to encode with, or resume training, the model (atomically: a kill while saving
        leaves the previous file).  Under ``torch.distributed``, ``fit(checkpoint=...)`` saves every rank's state."""
        training.atomic_save(self._checkpoint([training.rank_state(self)]), path)

    def _checkpoint(self, ranks: list[dict]) -> dict:
        """The checkpoint's content, with ``ranks`` the per-rank states of :func:`arl_fast.training.rank_state`."""
        epoch = self._epoch
        return {
            "format": training.CHECKPOINT_FORMAT,
            "config": self._config,
            "net": self._net.state_dict(),
            "averaged": self._averaged.state_dict(),
            "n_averaged": self._n_averaged,
            "optimizer": self._optimizer.state_dict(),
            "scaler": None if self._scaler is None else self._scaler.state_dict(),
            "n_epochs": self.n_epochs,
            "n_iters": self.n_iters,
            "loss_log": self.loss_log,
            "order_generator": self._order_generator.get_state(),
            "epoch": None if epoch is None else {k: epoch[k] for k in ("order", "step", "world", "batch_size")},
            "ranks": ranks,
        }

    def load(self, path) -> TS2Vec:
        """Restore a checkpoint written by :meth:`save` into this model (same architecture); returns self."""
        checkpoint = training.read_checkpoint(path)
        saved = checkpoint["config"]
        mismatched = [k for k in _ARCHITECTURE if saved.get(k) != self._config[k]]
        if mismatched:
            details = ", ".join(f"{k}={saved.get(k)} (model has {self._config[k]})" for k in mismatched)
            raise ValueError(f"checkpoint {path} has a different architecture: {details}")
        try:
            self._net.load_state_dict(checkpoint["net"])
            self._averaged.load_state_dict(checkpoint["averaged"])
            self._optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise ValueError(f"checkpoint {path} does not fit this model: {str(error).splitlines()[0]}") from None
        self._n_averaged = checkpoint["n_averaged"]
        if self._scaler is not None and checkpoint.get("scaler"):
            self._scaler.load_state_dict(checkpoint["scaler"])
        self.n_epochs = checkpoint["n_epochs"]
        self.n_iters = checkpoint["n_iters"]
        self.loss_log = list(checkpoint["loss_log"])
        if checkpoint["format"] == 1:  # one process; the permutation shared the crops' stream
            ranks = [{**{k: checkpoint[k] for k in ("host_generator", "generator", "generator_device", "loss_state")},
                      "epoch_sums": None}]
            epoch, order_state = None, None
        else:
            ranks, epoch, order_state = checkpoint["ranks"], checkpoint["epoch"], checkpoint["order_generator"]
        self._epoch = None if epoch is None else dict(epoch)
        training.set_rank_state(self, ranks[0])
        if order_state is not None:
            self._order_generator.set_state(order_state)
        else:
            self._order_generator.manual_seed(int(torch.randint(2**62, (), generator=self._host_generator)))
        self._rank, self._saved_ranks = 0, ranks
        return self

    @classmethod
    def from_checkpoint(
        cls, path, device="auto", loss: str | Callable | None = None, precision: str | None = None
    ) -> TS2Vec:
        """Build the model a checkpoint describes and restore it; ``loss`` is needed for a custom loss;
        ``precision`` overrides the saved one (e.g. to continue an fp16 run on a machine without CUDA)."""
        config = dict(training.read_checkpoint(path)["config"])
        if loss is not None:
            config["loss"] = loss
        elif config["loss"] is None:
            raise ValueError(f"checkpoint {path} was trained with a custom loss: pass it as loss=")
        if precision is not None:
            config["precision"] = precision
        return cls(**config, device=device).load(path)
