"""Life after deployment: the history store, the prediction log, outcomes and lineage.

- ``store``: ``HistoryStore`` — SQLAlchemy tables migrated by Alembic (runs, data quality, model
  metrics, drift, alerts, prediction log); SQLite by default, any SQLAlchemy URL by config.
- ``sensitive``: keyed hashing or dropping of ``sensitive: true`` schema columns (one rule).
- ``predlog``: ``PredictionLog`` — background, batched, bounded writing of scored rows.
- ``outcomes``: joining arriving labels to logged predictions; realised metrics.
- ``lineage``: from a model version back to its run and data, forward to its monitoring.
"""
from tabpipe.history.store import HistoryStore, StoreError, store_url

__all__ = ["HistoryStore", "StoreError", "store_url"]
