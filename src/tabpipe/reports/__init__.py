"""The HTML dashboards and their charts (training and monitoring reports)."""
