"""Wire formats: TF Serving and KServe v2 over gRPC and REST."""
