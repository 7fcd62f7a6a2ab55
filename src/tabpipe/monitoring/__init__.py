"""Life after deployment: drift (PSI), label-free estimates, governance, alerts, dashboards, monitoring runs."""
