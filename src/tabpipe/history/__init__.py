"""The history store (runs, quality, metrics, drift, alerts, the prediction log) and reading its log back."""
