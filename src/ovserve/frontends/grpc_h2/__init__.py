"""gRPC over our own HTTP/2 on the event loop (``--grpc_stack native``, the default)."""
