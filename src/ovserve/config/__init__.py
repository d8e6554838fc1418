"""Typed configuration, parsed once at the edge: shapes, models, the server."""
