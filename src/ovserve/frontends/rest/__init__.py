"""The HTTP front-end: TF Serving and KServe v2 REST, config and metrics endpoints."""
