"""Many jobs at once: sweeps over a grid and pipelines of notebooks, built on :mod:`mlops_nb.jobs.run`."""
