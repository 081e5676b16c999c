"""Data loaders, one module per kind of data: UCR/UEA classification archives (:mod:`.uea`),
forecasting CSVs with a date column (:mod:`.forecast`), labelled anomaly series (:mod:`.nab`)."""

from .forecast import ForecastDataset, load_forecast_csv
from .nab import AnomalyDataset, anomaly_dataset, load_nab
from .uea import DATA_ENV, UEADataset, load_uea, to_ts2vec

__all__ = ["AnomalyDataset", "DATA_ENV", "ForecastDataset", "UEADataset", "anomaly_dataset", "load_forecast_csv",
           "load_nab", "load_uea", "to_ts2vec"]
