"""Protobuf/gRPC code generated from protos/ by scripts/gen_protos. DO NOT EDIT."""
