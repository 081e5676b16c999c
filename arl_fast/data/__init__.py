"""Data loaders, one module per kind of data: UCR/UEA classification archives (:mod:`.uea`),
forecasting CSVs with a date column (:mod:`.forecast`), labelled anomaly series (:mod:`.nab`)."""

from .uea import DATA_ENV, UEADataset, load_uea, to_ts2vec

__all__ = ["DATA_ENV", "UEADataset", "load_uea", "to_ts2vec"]
