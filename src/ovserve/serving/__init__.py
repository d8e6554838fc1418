"""The protocol-neutral serving core: models, versions, validation, inference."""
