"""Several serving processes on the same ports (``--grpc_workers`` / ``--rest_workers``).

Why processes: one Python event loop is the ceiling for small models (grpc.aio, the codecs and
the OpenVINO call all run on it). Each worker is a whole ovserve (own loop, own compiled models)
bound to the ports with SO_REUSEPORT, so the kernel spreads connections over them. The parent
(:mod:`.supervisor`) only starts, watches and stops them; the workers talk to each other over
Unix sockets (:mod:`.peers`) so ``/metrics`` and ``POST /v1/config/reload`` cover all of them.
"""
