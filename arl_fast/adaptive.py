"""The adaptive resolution loss (the paper's eq. 7): train one resolution per epoch, chosen from the loss trends.

Each training step backpropagates the loss of the epoch's resolution only.  To
see every resolution's trend, the module also measures all levels' losses
without gradient ("probes") every ``probe_every`` steps, counted across
epochs; ``end_epoch()`` hands the epoch means to a :class:`ResolutionSelector`,
which draws the next epoch's resolution.  Counting across epochs keeps the
probe's cost at 1/``probe_every`` when epochs are a single step (ETTh1's two
training chunks, or 12 series at batch size 8).  A choice lasts at least
``probe_every`` steps: an epoch shorter than that keeps its resolution into the
next epochs until the choice has run ``probe_every`` steps, so that every draw
rests on a probe of its own period instead of redrawing each step from a stale
trend (what one-step epochs did before; ``bench/results/adaptive_etth1.md``).

A probe of every level costs about 36% of the hierarchical loss's
forward+backward (``bench/probe_cost.py``), so probing every step would eat
most of the saving on long series.  The default, every 4th step, costs about
9%.  On ACSF1 eq. 5's probabilities stay near uniform whichever probe is used
(total variation 0.15 from uniform when probing every step); probing every 4th
step moves them by 0.17 on average, no more than probing a quarter of every
batch, which costs more (``bench/results/probe_options_ACSF1.txt``).

Two baselines also train one level per step, without probes, to tell apart what the saving comes from
(training one resolution per epoch) and what eq. 5's choice adds: ``selection="uniform"`` draws each epoch's
resolution uniformly among those the epoch's batches had (the same cost as eq. 5 less its probes);
``selection="finest"`` trains level 0 (full length, the costliest level) of every batch.  :func:`variant_options` maps the names ``compare`` and
``TS2Vec(loss=...)`` accept (``"adaptive"``, ``"adaptive@0.1"``, ``"uniform"``, ``"finest"``) to arguments.

Under ``torch.distributed`` the epoch sums are all-reduced, so every rank
observes the same means, and rank 0's draw is broadcast, so every rank trains
the same resolution even when the ranks were seeded differently.
"""

import copy
import math
import numbers

import numpy as np
import torch
from torch import distributed as dist

from ._validation import check_alpha, check_pair, check_temporal_unit
from .losses import num_levels, resolution_loss, resolution_losses
from .selector import ResolutionSelector

# Aligned resolutions the epoch accumulators hold: sequences up to 2**64 long.
MAX_RESOLUTIONS = 64

# How each epoch's resolution is chosen: eq. 5-6, uniformly at random, or always level 0.
SELECTIONS = ("adaptive", "uniform", "finest")


def variant_options(name):
    """Keyword arguments of :class:`AdaptiveResolutionLoss` for a variant name.

    ``"adaptive"`` (eq. 5-6 at temperature 1), ``"adaptive@T"`` (eq. 5 at temperature ``T > 0``, e.g.
    ``"adaptive@0.1"`` for a sharper draw), ``"uniform"`` and ``"finest"``.  One string names a variant
    everywhere (API, ``arl-fast compare --losses``, results files).
    """
    if not isinstance(name, str):
        raise TypeError(f"loss must be a variant name string, got {type(name).__name__}")
    expected = "'adaptive', 'adaptive@T' (T a number > 0), 'uniform' or 'finest'"
    base, at, text = name.partition("@")
    if base not in SELECTIONS:
        raise ValueError(f"loss must be {expected}, got {name!r}")
    if at and base != "adaptive":
        raise ValueError(f"loss {name!r}: only 'adaptive' takes a temperature '@T'; expected {expected}")
    if not at:
        return {"selection": base}
    try:
        temperature = float(text)
    except ValueError:
        temperature = float("nan")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"loss {name!r}: the temperature after '@' must be a finite number > 0, as in 'adaptive@0.1'")
    return {"selection": "adaptive", "temperature": temperature}


class AdaptiveResolutionLoss(torch.nn.Module):
    """``forward(z1, z2)`` gives the loss of the epoch's resolution; call ``end_epoch()`` after each epoch.

    The first epoch's resolution is drawn uniformly among those of the first
    batch.  ``history`` holds, per finished epoch, the aligned resolution
    trained (0 the coarsest), the probabilities it was drawn from and the
    per-resolution losses recorded at its end (coarsest first, None where never
    seen).  Probing happens only in training mode.  ``selection`` (see :data:`SELECTIONS`) swaps eq. 5-6
    for a baseline: ``"uniform"`` and ``"finest"`` never probe, their ``history`` has no ``level_losses``
    and ``"finest"``'s no resolutions or probabilities (None).
    """

    def __init__(
        self,
        alpha=0.5,
        temporal_unit=0,
        seed=None,
        backend="auto",
        temperature=1.0,
        probe_every=4,
        score="difference",
        selection="adaptive",
    ):
        super().__init__()
        check_alpha(alpha)
        check_temporal_unit(temporal_unit)
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a string, got {type(backend).__name__}")
        if isinstance(probe_every, bool) or not isinstance(probe_every, numbers.Integral):
            raise TypeError(f"probe_every must be an int >= 1, got {probe_every!r}")
        if probe_every < 1:
            raise ValueError(f"probe_every must be >= 1, got {probe_every}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        self.selection = selection
        self.alpha = float(alpha)
        self.temporal_unit = int(temporal_unit)
        self.backend = backend
        self.probe_every = int(probe_every)
        self.selector = ResolutionSelector(seed=seed, temperature=temperature, score=score)
        self.history = []
        self.epoch = 0
        self.resolution = None  # aligned resolution trained this epoch; drawn at the first forward
        self.probabilities = None  # the distribution it was drawn from
        self._step = 0  # training steps so far: probes are every probe_every-th, across epoch boundaries
        self._epoch_steps = 0  # training steps this epoch
        self._period_steps = 0  # training steps since the resolution was drawn: a choice lasts >= probe_every
        self._epoch_levels = 0  # most levels a batch had since the draw: the uniform draw's range
        self._totals = None  # (2, MAX_RESOLUTIONS): probed loss sums and counts per aligned resolution, this period

    def extra_repr(self):
        return (
            f"alpha={self.alpha}, temporal_unit={self.temporal_unit}, backend={self.backend!r}, "
            f"temperature={self.selector.temperature}, score={self.selector.score!r}, "
            f"probe_every={self.probe_every}, selection={self.selection!r}"
        )

    @classmethod
    def from_name(cls, name, **kwargs):
        """The variant ``name`` (see :func:`variant_options`) with the other arguments ``kwargs``."""
        return cls(**kwargs, **variant_options(name))

    def forward(self, z1, z2):
        """Loss of the epoch's resolution for ``z1, z2`` (B, T, C); probes all levels when due."""
        check_pair(z1, z2)
        n = num_levels(z1.shape[1])
        if self.selection == "finest":
            level = 0
        else:
            if self.resolution is None:
                first_n, self.resolution = _from_rank0([n, self.selector.sample(n_resolutions=n)])
                self.probabilities = [1.0 / first_n] * first_n
            level = ResolutionSelector.level_for(self.resolution, n)
        loss = resolution_loss(z1, z2, level, self.alpha, self.temporal_unit, backend=self.backend)
        if self.training:
            if self.selection == "adaptive" and self._step % self.probe_every == 0:
                self._probe(z1, z2)
            self._step += 1
            self._epoch_steps += 1
            self._period_steps += 1
            self._epoch_levels = max(self._epoch_levels, n)
        return loss

    @torch.no_grad()
    def _probe(self, z1, z2):
        """Add every level's loss on the batch to the epoch sums, without an autograd graph."""
        losses = resolution_losses(z1.detach(), z2.detach(), self.alpha, self.temporal_unit, backend=self.backend)
        if self._totals is None:
            dtype = torch.float32 if z1.device.type == "mps" else torch.float64
            self._totals = torch.zeros(2, MAX_RESOLUTIONS, dtype=dtype, device=z1.device)
        elif self._totals.device != z1.device:
            self._totals = self._totals.to(z1.device)
        n = losses.numel()
        self._totals[0, :n] += losses.flip(0).to(self._totals.dtype)
        self._totals[1, :n] += 1

    def end_epoch(self):
        """End the epoch: when the resolution has been trained ``probe_every`` steps or more, observe the mean
        per-resolution losses probed since it was drawn and draw the next; return the next epoch's resolution.

        An epoch shorter than ``probe_every`` steps keeps its resolution (and its probes) into the next epoch
        until the choice has run ``probe_every`` steps; its ``history`` entry repeats the standing trend.
        ``"uniform"`` draws among the resolutions its period had with equal probability; ``"finest"`` draws
        nothing and returns None.
        """
        if self._epoch_steps == 0:
            raise RuntimeError("end_epoch() called before any training-mode forward in this epoch")
        drawing = self.selection != "finest" and self._period_steps >= self.probe_every
        if drawing and self.selection == "adaptive":
            self._observe_epoch()
        self.history.append(
            {
                "epoch": self.epoch,
                "resolution": self.resolution,
                "probabilities": None if self.probabilities is None else list(self.probabilities),
                "level_losses": self.selector.values,
            }
        )
        if drawing and self.selection == "adaptive":
            self.probabilities = self.selector.probabilities().tolist()  # the first training step always probes
            (self.resolution,) = _from_rank0([self.selector.sample()])
        elif drawing and self.selection == "uniform":
            n = self._epoch_levels
            self.probabilities = [1.0 / n] * n
            (self.resolution,) = _from_rank0([self.selector.sample(n_resolutions=n)])
        self.epoch += 1
        self._epoch_steps = 0
        if drawing or self.selection == "finest":
            self._period_steps = 0
            self._epoch_levels = 0
            self._totals = None
        return self.resolution

    def _observe_epoch(self):
        """Hand the period's mean probed loss per resolution (all ranks' probes) to the selector."""
        totals = torch.zeros(2, MAX_RESOLUTIONS, dtype=torch.float64) if self._totals is None else self._totals
        if _distributed():
            totals = totals.to(_collective_device())
            dist.all_reduce(totals)
        sums, counts = totals.double().cpu().numpy()
        if counts.any():
            n = int(np.flatnonzero(counts)[-1]) + 1  # probes always cover the coarsest resolutions
            self.selector.observe((sums[:n] / counts[:n])[::-1])  # finest first

    def get_extra_state(self):
        """Selector, counters, running epoch sums and history: part of ``state_dict()``."""
        return {
            "selector": self.selector.state_dict(),
            "epoch": self.epoch,
            "resolution": self.resolution,
            "probabilities": None if self.probabilities is None else list(self.probabilities),
            "step": self._step,
            "epoch_steps": self._epoch_steps,
            "period_steps": self._period_steps,
            "epoch_levels": self._epoch_levels,
            "totals": None if self._totals is None else self._totals.double().cpu().tolist(),
            "history": copy.deepcopy(self.history),
        }

    def set_extra_state(self, state):
        self.selector.load_state_dict(state["selector"])
        self.epoch = state["epoch"]
        self.resolution = state["resolution"]
        self.probabilities = state["probabilities"]
        self._step = state["step"]
        self._epoch_steps = state["epoch_steps"]
        # States saved before choices spanned epochs drew at every epoch's end: their period is the epoch.
        self._period_steps = state.get("period_steps", max(state["epoch_steps"], self.probe_every))
        self._epoch_levels = state.get("epoch_levels", 0)  # absent from states saved before "uniform" existed
        self._totals = None if state["totals"] is None else torch.tensor(state["totals"], dtype=torch.float64)
        self.history = copy.deepcopy(state["history"])


def _distributed():
    return dist.is_available() and dist.is_initialized()


def _collective_device():
    """NCCL only moves CUDA tensors; the other process-group backends take CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _from_rank0(values):
    """``values`` (ints) as rank 0 has them, so every rank trains the same resolution."""
    if not _distributed():
        return values
    tensor = torch.tensor(values, dtype=torch.int64, device=_collective_device())
    dist.broadcast(tensor, src=0)
    return tensor.tolist()
