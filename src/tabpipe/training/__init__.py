"""Training: the stages of a run (``pipeline.py`` chains them), their specs, the model search and resampling."""
