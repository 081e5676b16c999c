"""TS2Vec's evaluation protocols, one module per task, each the same four steps: load the data (with its
splits), train the encoder, encode as the protocol says, score.

- :mod:`.classification`: full-series max-pooled representations, SVM or logistic regression, accuracy.
- :mod:`.forecasting`: causal sliding-window representations, ridge regression per horizon, MSE / MAE.
- :mod:`.anomaly`: masked-last vs unmasked representations, thresholded score, point-adjusted F1.
"""
