"""arl_fast: fast TS2Vec-style self-supervised training of time-series encoders."""

from .adaptive import AdaptiveResolutionLoss
from .backends import available_backends
from .losses import hierarchical_contrastive_loss, num_levels, resolution_loss, resolution_losses
from .selector import ResolutionSelector

__all__ = [
    "AdaptiveResolutionLoss",
    "ResolutionSelector",
    "available_backends",
    "hierarchical_contrastive_loss",
    "num_levels",
    "resolution_loss",
    "resolution_losses",
]
__version__ = "0.1.0"
