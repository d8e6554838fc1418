"""Inference engines: the only layer that knows OpenVINO."""
