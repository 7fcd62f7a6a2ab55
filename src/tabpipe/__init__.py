"""tabpipe: configuration-driven training, gating, versioning and serving of tabular classifiers."""
import os

# OpenMP's busy-wait between parallel regions starves other threads on small or shared VMs: a
# HistGradientBoosting fit measured 25x slower with 2 spinning threads on a 2-core machine.
# Must be set before scikit-learn loads its OpenMP runtime; an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
