"""Scoring with a fitted model: whole files and frames (batch, partitions) and one record at a time (compiled)."""
