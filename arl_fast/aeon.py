"""TS2Vec as an aeon collection transformer, for scikit-learn pipelines.

aeon and scikit-learn hand series as ``(n_cases, n_channels, n_timepoints)``
(or a list of ``(n_channels, n_timepoints_i)`` arrays when lengths differ);
:class:`TS2VecTransformer` converts to TS2Vec's ``(n, T, C)``, trains an
:class:`arl_fast.TS2Vec` in ``fit`` and returns its representations in
``transform``.  This is the only module of the package that imports aeon.
"""

from __future__ import annotations

__all__ = ["TS2VecTransformer"]

import numbers
from contextlib import contextmanager

import numpy as np
import torch
from aeon.transformations.collection import BaseCollectionTransformer
from aeon.utils.validation import check_n_jobs

from .data import to_ts2vec
from .ts2vec import TS2Vec


@contextmanager
def _torch_threads(n_threads: int):
    """Run the body with ``n_threads`` intra-op torch threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _runs_on_cpu(device) -> bool:
    """Whether ``device`` ("auto", a name or a torch.device) means the CPU in this process."""
    if isinstance(device, str) and device == "auto":
        return not torch.cuda.is_available()
    try:
        return torch.device(device).type == "cpu"
    except (RuntimeError, TypeError):
        return False  # invalid: fit reports it


def _seed_from(random_state) -> int | None:
    """TS2Vec's seed for aeon's ``random_state``: an int is used as is, a RandomState draws one."""
    if random_state is None:
        return None
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int, a RandomState or None, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, np.iinfo(np.int32).max))
    raise TypeError(f"random_state must be an int, a numpy RandomState or None, got {random_state!r}")


def _check_encoding_window(encoding_window):
    if encoding_window is None or (isinstance(encoding_window, str) and encoding_window == "full_series"):
        return encoding_window
    if isinstance(encoding_window, numbers.Integral) and not isinstance(encoding_window, bool):
        if encoding_window < 1:
            raise ValueError(f"encoding_window must be >= 1, got {encoding_window}")
        return int(encoding_window)
    raise ValueError(f"encoding_window must be 'full_series', an int >= 1 or None, got {encoding_window!r}")


def _series_lengths(X) -> np.ndarray:
    """Length of each series of an aeon collection (numpy3D or np-list)."""
    if isinstance(X, np.ndarray):
        return np.full(len(X), X.shape[2])
    return np.array([s.shape[1] for s in X])


def _check_observed(X) -> None:
    """Every series needs an observed value: an all-NaN series has nothing to train on or encode."""
    empty = [i for i, s in enumerate(X) if np.isnan(s).all()]
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        raise ValueError(
            f"X must have at least one observed (non-NaN) value in every series; "
            f"{len(empty)} series are all NaN, at index {shown}"
        )


class TS2VecTransformer(BaseCollectionTransformer):
    """TS2Vec representations (Yue et al., 2022) learnt without labels, trained fast.

    ``fit`` trains an :class:`arl_fast.TS2Vec` encoder on ``X`` with TS2Vec's
    contrastive loss (``loss="hierarchical"``) or the adaptive resolution
    loss (``loss="adaptive"``); ``transform`` encodes series with the trained
    (weight-averaged) encoder.  Labels are never used.

    Parameters
    ----------
    output_dims, hidden_dims, depth : int, default=320, 64, 10
        Representation size, hidden channels and number of residual blocks (TS2Vec's).
    loss : str or callable, default="hierarchical"
        The contrastive loss: "hierarchical" (TS2Vec's), "adaptive" (one
        resolution per epoch), any other name :class:`arl_fast.TS2Vec` takes,
        or a callable ``(z1, z2) -> scalar tensor``.
    backend : str, default="auto"
        Loss backend: "auto", "reference", "triton" or "cpp" (see the README).
    n_epochs, n_iters : int or None, default=None
        Training budget; with both None, TS2Vec's: 200 iterations, or 600 when
        ``X`` has more than 100,000 values.
    batch_size : int, default=8
    lr : float, default=1e-3
        AdamW learning rate.
    max_train_length : int or None, default=None
        Longer series are cut into pieces of at most this length for training.
    temporal_unit : int, default=0
        Coarsest level at which the temporal term is skipped below (TS2Vec's).
    encoding_window : "full_series", int or None, default="full_series"
        "full_series" max-pools each series into one vector: ``transform``
        returns a 2-D array ``(n_cases, output_dims)``.  An int ``w`` max-pools
        a centred window of ``w`` steps around each timestamp and None keeps
        one vector per timestamp: ``transform`` then returns a collection
        ``(n_cases, output_dims, n_timepoints)`` (a list of 2-D arrays for
        unequal-length input).
    device : str or torch.device, default="auto"
        "auto" trains on CUDA when available, else on the CPU.
    random_state : int, RandomState or None, default=None
        An int is TS2Vec's ``seed``: it fixes the weights, crops, masks,
        dropout and the adaptive draws, so the same int (and ``n_jobs``) gives
        the same features on CPU.  A RandomState draws a seed.  GPU training
        is not bit-for-bit reproducible.
    n_jobs : int, default=1
        Torch CPU threads during ``fit`` and ``transform`` (restored after);
        -1 uses every core.  Another thread count sums in another order, so
        features then agree to rounding only.
    verbose : bool, default=False
        Show a progress bar while training.

    Attributes
    ----------
    model_ : arl_fast.TS2Vec
        The trained model; ``model_.save(path)`` writes a resumable checkpoint.
    history_ : list of dict
        Per-epoch loss log of the training run (``{"epoch", "loss", "level_losses"}``).

    Notes
    -----
    The estimator pickles (the model's weights, optimiser and random
    generators with it); a model trained on a GPU unpickles only where CUDA
    is available, so move it with ``model_.save`` and
    ``TS2Vec.from_checkpoint(path, device="cpu")`` instead.  Unequal-length
    series are NaN-padded for training, as TS2Vec does, and encoded at their
    own length, so a series' features do not depend on the rest of ``X``
    (beyond float rounding, which varies with the batch).

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import RidgeClassifierCV
    >>> from aeon.datasets import load_basic_motions
    >>> from arl_fast.aeon import TS2VecTransformer
    >>> X, y = load_basic_motions(split="train")
    >>> clf = make_pipeline(TS2VecTransformer(loss="adaptive", random_state=0), RidgeClassifierCV())
    >>> clf.fit(X, y).score(X, y)  # doctest: +SKIP
    """

    _tags = {
        "X_inner_type": ["np-list", "numpy3D"],
        "output_data_type": "Tabular",
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:missing_values": True,
        "capability:multithreading": True,
        "algorithm_type": "deeplearning",
        "python_dependencies": "torch",
        "non_deterministic": False,
    }

    def __init__(
        self,
        output_dims: int = 320,
        hidden_dims: int = 64,
        depth: int = 10,
        loss="hierarchical",
        backend: str = "auto",
        n_epochs: int | None = None,
        n_iters: int | None = None,
        batch_size: int = 8,
        lr: float = 1e-3,
        max_train_length: int | None = None,
        temporal_unit: int = 0,
        encoding_window="full_series",
        device="auto",
        random_state=None,
        n_jobs: int = 1,
        verbose: bool = False,
    ):
        self.output_dims = output_dims
        self.hidden_dims = hidden_dims
        self.depth = depth
        self.loss = loss
        self.backend = backend
        self.n_epochs = n_epochs
        self.n_iters = n_iters
        self.batch_size = batch_size
        self.lr = lr
        self.max_train_length = max_train_length
        self.temporal_unit = temporal_unit
        self.encoding_window = encoding_window
        self.device = device
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        super().__init__()
        # Tags follow the parameters (fit re-runs __init__, so they are current after fit).
        full_series = isinstance(encoding_window, str) and encoding_window == "full_series"
        self.set_tags(**{
            "output_data_type": "Tabular" if full_series else "Collection",
            # On CUDA, gather's backward and cuDNN's convolution backward accumulate with atomics.
            "non_deterministic": not _runs_on_cpu(device),
        })

    def _preprocess_collection(self, X, store_metadata=True):
        """aeon's checks and conversion, after rejecting empty input (on which aeon fails with an IndexError)."""
        if isinstance(X, (list, tuple, np.ndarray)) and len(X) == 0:
            raise ValueError("X must hold at least one series, got an empty collection")
        if isinstance(X, np.ndarray) and X.ndim in (2, 3) and X.shape[-1] == 0:
            raise ValueError(f"X's series must have at least one timepoint, got shape {X.shape}")
        if isinstance(X, list) and any(isinstance(s, np.ndarray) and s.ndim and s.shape[-1] == 0 for s in X):
            raise ValueError("X's series must have at least one timepoint, got an empty series")
        return super()._preprocess_collection(X, store_metadata=store_metadata)

    def _fit(self, X, y=None):
        """Train a fresh TS2Vec on ``X`` (numpy3D or np-list); ``y`` is ignored."""
        _check_encoding_window(self.encoding_window)
        if not isinstance(self.verbose, (bool, np.bool_)):
            raise TypeError(f"verbose must be a bool, got {self.verbose!r}")
        seed = _seed_from(self.random_state)
        self._n_jobs = check_n_jobs(self.n_jobs)
        _check_observed(X)
        with _torch_threads(self._n_jobs):
            self.model_ = TS2Vec(
                input_dims=self.metadata_["n_channels"],
                output_dims=self.output_dims,
                hidden_dims=self.hidden_dims,
                depth=self.depth,
                loss=self.loss,
                temporal_unit=self.temporal_unit,
                backend=self.backend,
                lr=self.lr,
                batch_size=self.batch_size,
                max_train_length=self.max_train_length,
                device=self.device,
                seed=seed,
            )
            self.history_ = self.model_.fit(
                to_ts2vec(X), n_epochs=self.n_epochs, n_iters=self.n_iters, progress=bool(self.verbose)
            )
        return self

    def _transform(self, X, y=None):
        """Encode ``X``: (n_cases, output_dims) for "full_series", else a collection of per-timestamp vectors."""
        window = _check_encoding_window(self.encoding_window)
        _check_observed(X)
        lengths = _series_lengths(X)
        outputs = [None] * len(lengths)
        with _torch_threads(self._n_jobs):
            # Encode each length apart, so padding never reaches the convolutions.
            for length in np.unique(lengths):
                index = np.flatnonzero(lengths == length)
                group = X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]
                encoded = self.model_.encode(to_ts2vec(group), encoding_window=window)
                if window != "full_series":
                    encoded = encoded.transpose(0, 2, 1)  # aeon's (n, channels, timepoints)
                for i, row in zip(index, encoded):
                    outputs[i] = row
        if isinstance(X, list) and window != "full_series":
            return outputs
        return np.stack(outputs)

    @classmethod
    def _get_test_params(cls, parameter_set="default"):
        """Tiny models and budgets so aeon's checks run in seconds; on the CPU, where training is deterministic."""
        tiny = {
            "output_dims": 4, "hidden_dims": 4, "depth": 1, "n_epochs": 1, "batch_size": 4, "device": "cpu",
        }
        return [
            tiny,
            {**tiny, "loss": "adaptive", "n_epochs": 2, "encoding_window": 3},
        ]
