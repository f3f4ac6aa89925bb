"""Configuration: every SHOPFLOW_* environment variable, read, typed and validated in one place."""
