"""tabpipe: configuration-driven training, gating, versioning and serving of tabular classifiers.

Importing tabpipe reads no environment variable and changes none; it only lets the module names of
tabpipe 0.1 resolve to their new homes (``tabpipe.moved``), so saved models and configs keep loading.
"""
from tabpipe import moved as _moved

_moved.install()

__version__ = "0.1.0"
