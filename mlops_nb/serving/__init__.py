"""Serving a registered model over HTTP (issue 16): MLflow's scoring protocol, an endpoint
that follows its alias and swaps versions live, Prometheus metrics, a request log, and a
static export. Built on the registry and the store, never on adapters."""
