"""Watching a served model: reference profiles, drift and performance of the request
log's windows against them, and the monitor runs that record each verdict.

- :mod:`~mlops_nb.monitoring.profile`: what a reference profile holds and how it is built.
- :mod:`~mlops_nb.monitoring.drift`: a window against a profile, with Evidently's methods.
- :mod:`~mlops_nb.monitoring.profiles`: where a version's profile is stored and read.
- :mod:`~mlops_nb.monitoring.window`: the request log's rows as inputs, predictions, labels.
- :mod:`~mlops_nb.monitoring.monitor`: the verdict, its policy, the monitor runs.
- :mod:`~mlops_nb.monitoring.report`: the self-contained HTML report and its SVG histograms.

Built on the registry, run queries and the serving request log; never on adapters. The
statistics are our own code on numpy and scipy (no Evidently, no plotting library).
Nothing is imported here: ``import mlops_nb.monitoring`` stays free.
"""
