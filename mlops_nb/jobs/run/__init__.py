"""One notebook as one job: parameters, kernels, the execution and where it runs."""
