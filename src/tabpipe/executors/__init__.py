"""Where the model search's tasks run: worker processes of this machine (local) or a Dask cluster (dask)."""
