"""Adaptive choice of the resolution to train (the paper's eqs. 5-6, appendix B).

Crop lengths vary from batch to batch, so a measurement's level ``k`` (level 0
the finest) does not name the same resolution twice.  Resolutions are aligned
by counting from the coarsest one, whose length is 1: in a measurement with
``n`` levels, level ``k`` is aligned resolution ``n - 1 - k`` ("flip and
shift", B.1).  Aligned resolution ``a`` is the pooling that leaves between
``2**a`` and ``2**(a + 1) - 1`` timestamps.
"""

import math
import numbers

import numpy as np

SCORES = ("difference", "relative")


class ResolutionSelector:
    """Observe per-level losses once per epoch, score their trends, draw a resolution.

    ``score="difference"`` is the paper's eq. 5, ``softmax((L_e - L_{e-1}) / temperature)``;
    ``score="relative"`` divides each change by ``|L_{e-1}|`` so that levels whose
    losses differ in scale compete on their relative trend.  Draws use the
    selector's own NumPy generator, seeded by ``seed``, so they are reproducible
    and survive a ``state_dict`` round trip.
    """

    def __init__(self, seed=None, temperature=1.0, score="difference"):
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0
        ):
            raise TypeError(f"seed must be None or a non-negative int, got {seed!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"temperature must be a number, got {temperature!r}")
        if not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        self.temperature = float(temperature)
        self.score = score
        self._rng = np.random.default_rng(seed)
        self._values = []  # last recorded loss per aligned resolution, None if never seen
        self._changes = None  # score inputs of the last measurement's resolutions
        self._count = 0

    @property
    def num_observations(self):
        """How many measurements have been observed (0 before the first)."""
        return self._count

    @property
    def values(self):
        """Last recorded loss per aligned resolution (coarsest first), None where never seen."""
        return list(self._values)

    def observe(self, level_losses):
        """Record one epoch's losses, indexed by level (level 0 the finest).

        Accepts a sequence, a NumPy array or a 1-D tensor.  Resolutions this
        measurement lacks keep their last recorded value.
        """
        losses = _as_float_list(level_losses)
        n = len(losses)
        for level, value in enumerate(losses):
            if not math.isfinite(value):
                raise ValueError(f"level_losses[{level}] (level {level}) is {value}; losses must be finite")
        aligned = losses[::-1]
        previous = self._values + [None] * max(0, n - len(self._values))
        changes = []
        for a, value in enumerate(aligned):
            before = previous[a]
            if before is None:
                changes.append(0.0)
            elif self.score == "relative":
                changes.append((value - before) / abs(before) if before != 0 else 0.0)
            else:
                changes.append(value - before)
        self._values = aligned + previous[n:]
        self._changes = changes
        self._count += 1

    def probabilities(self):
        """Eq. 5 over the resolutions of the last measurement, indexed by aligned resolution.

        Resolutions absent from the last measurement (finer than its finest)
        get 0.0.  Raises RuntimeError before any measurement.
        """
        if self._changes is None:
            raise RuntimeError("no measurement observed yet: call observe(level_losses) first")
        scores = np.asarray(self._changes, dtype=np.float64) / self.temperature
        weights = np.exp(scores - scores.max())
        probs = np.zeros(len(self._values))
        probs[: len(weights)] = weights / weights.sum()
        return probs

    def sample(self, n_resolutions=None):
        """Draw one aligned resolution from ``probabilities()`` (eq. 6) and return it as an int.

        Before the first measurement there is no trend: pass ``n_resolutions``
        to draw uniformly among the ``n_resolutions`` coarsest resolutions.
        """
        if self._changes is None:
            if n_resolutions is None:
                raise RuntimeError("no measurement observed yet: pass n_resolutions for a uniform draw")
            _check_count("n_resolutions", n_resolutions, minimum=1)
            return int(self._rng.integers(n_resolutions))
        if n_resolutions is not None:
            raise ValueError("n_resolutions is only for the draw before the first measurement")
        probs = self.probabilities()
        return int(self._rng.choice(len(probs), p=probs))

    @staticmethod
    def level_for(aligned, n_levels):
        """The level of a batch with ``n_levels`` levels that trains aligned resolution ``aligned``.

        A crop too short to have that resolution trains its finest level, 0.
        """
        _check_count("aligned", aligned, minimum=0)
        _check_count("n_levels", n_levels, minimum=1)
        return max(n_levels - 1 - aligned, 0)

    def state_dict(self):
        """Everything needed to resume: recorded losses, last trend, generator state."""
        return {
            "temperature": self.temperature,
            "score": self.score,
            "values": list(self._values),
            "changes": None if self._changes is None else list(self._changes),
            "count": self._count,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state):
        """Restore a ``state_dict()``; the following draws are those the saved selector would make."""
        missing = {"temperature", "score", "values", "changes", "count", "rng"} - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        if state["score"] not in SCORES:
            raise ValueError(f"state['score'] must be one of {SCORES}, got {state['score']!r}")
        self.temperature = float(state["temperature"])
        self.score = state["score"]
        self._values = list(state["values"])
        self._changes = None if state["changes"] is None else list(state["changes"])
        self._count = int(state["count"])
        self._rng = np.random.default_rng()
        self._rng.bit_generator.state = state["rng"]


def _as_float_list(level_losses):
    """1-D float list from a sequence, array or tensor; ValueError if empty or not 1-D."""
    if hasattr(level_losses, "detach"):  # torch.Tensor, without importing torch here
        level_losses = level_losses.detach().cpu().double().numpy()
    try:
        array = np.asarray(level_losses, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"level_losses must be a 1-D sequence of numbers, got {type(level_losses).__name__}") from err
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"level_losses must be 1-D and non-empty, got shape {array.shape}")
    return [float(v) for v in array]


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
