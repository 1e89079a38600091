"""Renders status snapshots only (tqdm bar, Jupyter widget); never calls a backend, never imports the job."""
