"""ovserve: a Python drop-in for OpenVINO Model Server."""

__version__ = "0.1.0"
