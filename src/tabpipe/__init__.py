"""tabpipe: configuration-driven training, gating, versioning and serving of tabular classifiers."""

__version__ = "0.1.0"
