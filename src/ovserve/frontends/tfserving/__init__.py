"""TF Serving API over gRPC and REST."""
