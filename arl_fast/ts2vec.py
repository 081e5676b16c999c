"""The TS2Vec model: training by contrasting two overlapping crops, with a pluggable loss.

Follows TS2Vec's training loop (random cropping, timestamp masking,
``max_train_length`` splitting, NaN handling, AdamW, an averaged encoder for
inference) without its per-step overheads: crops, masks and dropout are drawn
by the model's own seeded generators on the training device, the batch is
gathered there, and the loss is read back once per epoch.
"""

from __future__ import annotations

import copy
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .encoder import TSEncoder
from .losses import resolution_losses

_ARCHITECTURE = ("input_dims", "output_dims", "hidden_dims", "depth", "kernel_size")
_CHECKPOINT_FORMAT = 1


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
    """Draw crop bounds as TS2Vec does: scalars from ``host_generator``, row offsets on ``device``."""

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
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}") from error


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
        self.backend = backend
        self.device = _resolve_device(device)
        if seed is not None:
            seed = _check_int("seed", seed, 0)
        self.seed = seed

        init_seed, host_seed, device_seed, loss_seed = np.random.SeedSequence(seed).generate_state(4)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(init_seed))
            self._net = TSEncoder(input_dims, output_dims, hidden_dims, depth, kernel_size)
        self._net.to(self.device).train()
        self._averaged = copy.deepcopy(self._net).eval().requires_grad_(False)
        self._n_averaged = 1
        self._optimizer = torch.optim.AdamW(self._net.parameters(), lr=self.lr)
        self._host_generator = torch.Generator().manual_seed(int(host_seed))
        self._generator = torch.Generator(device=self.device).manual_seed(int(device_seed))

        self.loss_name, self.loss = self._make_loss(loss, int(loss_seed))
        self._config = dict(
            input_dims=input_dims, output_dims=output_dims, hidden_dims=hidden_dims, depth=depth,
            kernel_size=kernel_size, loss=self.loss_name if self.loss_name != "custom" else None,
            temporal_unit=self.temporal_unit, backend=backend, lr=self.lr, batch_size=self.batch_size,
            max_train_length=max_train_length, seed=seed,
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

    def _train_step(self, x):
        crop = draw_crop(x.size(1), x.size(0), self.temporal_unit, self._host_generator, self._generator, x.device)
        view1, view2 = crop_views(x, crop)
        z1 = self._net(view1, binomial_mask(*view1.shape[:2], self._generator, x.device), self._generator)
        z2 = self._net(view2, binomial_mask(*view2.shape[:2], self._generator, x.device), self._generator)
        loss, levels = self._compute_loss(z1[:, -crop.crop_l:], z2[:, : crop.crop_l])
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        self._update_average()
        return loss.detach(), None if levels is None else levels.detach()

    @torch.no_grad()
    def _update_average(self):
        """Stochastic weight averaging of the online encoder into the averaged one (as AveragedModel)."""
        weight = 1.0 / (self._n_averaged + 1)
        torch._foreach_lerp_(list(self._averaged.parameters()), list(self._net.parameters()), weight)
        self._n_averaged += 1

    def fit(self, X, n_epochs: int | None = None, n_iters: int | None = None, progress: bool = True) -> list[dict]:
        """Train on series ``X`` of shape (n_series, n_timestamps, n_channels), NaN for missing values.

        Training stops when the model's epoch count reaches ``n_epochs`` or its
        iteration count reaches ``n_iters`` (counted since the model was
        created, so a loaded checkpoint resumes where it stopped).  Without
        either, TS2Vec's budget applies: 200 iterations, or 600 when ``X`` has
        more than 100,000 values.  Returns the log entries of the epochs
        completed by this call: ``{"epoch", "loss", "level_losses"}``, where
        ``level_losses`` is the mean loss per level (finest first) for the
        hierarchical loss and None otherwise.
        """
        if n_epochs is not None:
            n_epochs = _check_int("n_epochs", n_epochs, 0)
        if n_iters is not None:
            n_iters = _check_int("n_iters", n_iters, 0)
        x = _check_series("X", X, self.input_dims)
        if n_epochs is None and n_iters is None:
            n_iters = 200 if x.size <= 100_000 else 600
        data = self._prepare_train(x)
        batch_size = min(self.batch_size, len(data))
        per_epoch = len(data) // batch_size
        ts_l = data.size(1)
        window = self.max_train_length if self.max_train_length is not None and ts_l > self.max_train_length else None
        n_levels = (window or ts_l).bit_length()

        goal = [] if n_iters is None else [n_iters]
        if n_epochs is not None:
            goal.append(self.n_iters + max(n_epochs - self.n_epochs, 0) * per_epoch)
        bar = tqdm(total=min(goal), initial=min(self.n_iters, min(goal)), disable=not progress, unit="it",
                   desc="training", leave=False)
        new_entries = []
        self._net.train()
        while (n_epochs is None or self.n_epochs < n_epochs) and (n_iters is None or self.n_iters < n_iters):
            order = torch.randperm(len(data), generator=self._host_generator).to(self.device)
            loss_sum = torch.zeros((), device=self.device)
            level_sum = torch.zeros(n_levels, device=self.device)
            level_count = [0] * n_levels
            done = 0
            for i in range(per_epoch):
                if n_iters is not None and self.n_iters >= n_iters:
                    break
                x = data[order[i * batch_size : (i + 1) * batch_size]]
                if window is not None:
                    start = int(torch.randint(ts_l - window + 1, (), generator=self._host_generator))
                    x = x[:, start : start + window]
                loss, levels = self._train_step(x)
                loss_sum += loss
                if levels is not None:
                    level_sum[: len(levels)] += levels
                    for k in range(len(levels)):
                        level_count[k] += 1
                done += 1
                self.n_iters += 1
                bar.update()
            if done < per_epoch:
                break
            entry = {
                "epoch": self.n_epochs,
                "loss": loss_sum.item() / done,
                "level_losses": None if self.loss is not None else [
                    s / c for s, c in zip(level_sum.tolist(), level_count) if c > 0
                ],
            }
            self.loss_log.append(entry)
            new_entries.append(entry)
            if hasattr(self.loss, "end_epoch"):
                self.loss.end_epoch()
            self.n_epochs += 1
            bar.set_postfix(epoch=self.n_epochs, loss=f"{entry['loss']:.4f}")
        bar.close()
        return new_entries

    # ------------------------------------------------------------------ inference

    @torch.no_grad()
    def encode(self, X, encoding_window: str | int | None = None, batch_size: int | None = None) -> np.ndarray:
        """Representations of series ``X`` (n_series, n_timestamps, n_channels) from the averaged encoder.

        ``encoding_window=None`` gives one vector per timestamp, (n, T, output_dims);
        ``"full_series"`` max-pools over the whole series, (n, output_dims);
        an int ``w`` max-pools over a centred window of ``w`` steps, (n, T, output_dims).
        """
        x = _check_series("X", X, self.input_dims)
        if encoding_window is not None and encoding_window != "full_series":
            if isinstance(encoding_window, str):
                raise ValueError(f"encoding_window must be None, 'full_series' or an int, got {encoding_window!r}")
            encoding_window = _check_int("encoding_window", encoding_window, 1)
        batch_size = _check_int("batch_size", batch_size, 1) if batch_size is not None else 4 * self.batch_size
        outputs = []
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32))
            out = self._averaged(batch.to(self.device)).transpose(1, 2)  # (B, C, T)
            if encoding_window == "full_series":
                out = F.max_pool1d(out, kernel_size=out.size(2)).squeeze(2)
            else:
                if encoding_window is not None:
                    out = F.max_pool1d(out, encoding_window, stride=1, padding=encoding_window // 2)
                    out = out[:, :, : x.shape[1]]
                out = out.transpose(1, 2)
            outputs.append(out.cpu())
        return torch.cat(outputs).numpy()

    # ------------------------------------------------------------------ checkpoints

    def save(self, path) -> None:
        """Save everything needed to encode with, or resume training, the model."""
        torch.save(
            {
                "format": _CHECKPOINT_FORMAT,
                "config": self._config,
                "net": self._net.state_dict(),
                "averaged": self._averaged.state_dict(),
                "n_averaged": self._n_averaged,
                "optimizer": self._optimizer.state_dict(),
                "n_epochs": self.n_epochs,
                "n_iters": self.n_iters,
                "loss_log": self.loss_log,
                "host_generator": self._host_generator.get_state(),
                "generator": self._generator.get_state(),
                "generator_device": self.device.type,
                "loss_state": self.loss.state_dict() if hasattr(self.loss, "state_dict") else None,
            },
            path,
        )

    def load(self, path) -> TS2Vec:
        """Restore a checkpoint written by :meth:`save` into this model (same architecture); returns self."""
        checkpoint = _read_checkpoint(path)
        saved = checkpoint["config"]
        mismatched = [k for k in _ARCHITECTURE if saved[k] != self._config[k]]
        if mismatched:
            details = ", ".join(f"{k}={saved[k]} (model has {self._config[k]})" for k in mismatched)
            raise ValueError(f"checkpoint {path} has a different architecture: {details}")
        self._net.load_state_dict(checkpoint["net"])
        self._averaged.load_state_dict(checkpoint["averaged"])
        self._n_averaged = checkpoint["n_averaged"]
        self._optimizer.load_state_dict(checkpoint["optimizer"])
        self.n_epochs = checkpoint["n_epochs"]
        self.n_iters = checkpoint["n_iters"]
        self.loss_log = list(checkpoint["loss_log"])
        self._host_generator.set_state(checkpoint["host_generator"].cpu())
        if checkpoint["generator_device"] == self.device.type:
            self._generator.set_state(checkpoint["generator"].cpu())
        else:  # generator states do not carry across device types: reseed from the saved position
            self._generator.manual_seed(int(torch.randint(2**62, (), generator=self._host_generator)))
        if checkpoint["loss_state"] is not None and hasattr(self.loss, "load_state_dict"):
            self.loss.load_state_dict(checkpoint["loss_state"])
        return self

    @classmethod
    def from_checkpoint(cls, path, device="auto", loss: str | Callable | None = None) -> TS2Vec:
        """Build the model a checkpoint describes and restore it; ``loss`` is needed for a custom loss."""
        config = dict(_read_checkpoint(path)["config"])
        if loss is not None:
            config["loss"] = loss
        elif config["loss"] is None:
            raise ValueError(f"checkpoint {path} was trained with a custom loss: pass it as loss=")
        return cls(**config, device=device).load(path)


def _read_checkpoint(path) -> dict:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a TS2Vec checkpoint written by arl_fast")
    return checkpoint
