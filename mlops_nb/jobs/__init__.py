"""Headless notebook jobs: one papermill execution is one MLflow run.

Jupyter-free core: parameters are checked against the notebook's ``parameters`` cell
before any kernel starts (:mod:`.params`), kernels are started ahead of need
(:mod:`.pool`), and :mod:`.runner` executes a notebook as a tracked job.
"""
