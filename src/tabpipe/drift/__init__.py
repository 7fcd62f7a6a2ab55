"""Data drift: the reference profile frozen at publish, PSI against it, and the training-time drift report."""
