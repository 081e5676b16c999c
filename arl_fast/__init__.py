"""arl_fast: fast TS2Vec-style self-supervised training of time-series encoders."""

from .adaptive import AdaptiveResolutionLoss
from .backends import available_backends
from .data import load_forecast_csv, load_nab, load_uea
from .losses import hierarchical_contrastive_loss, num_levels, resolution_loss, resolution_losses
from .selector import ResolutionSelector
from .ts2vec import TS2Vec

__all__ = [
    "AdaptiveResolutionLoss",
    "ResolutionSelector",
    "TS2Vec",
    "available_backends",
    "hierarchical_contrastive_loss",
    "load_forecast_csv",
    "load_nab",
    "load_uea",
    "num_levels",
    "resolution_loss",
    "resolution_losses",
]
__version__ = "0.1.0"
