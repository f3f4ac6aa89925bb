"""Ingest: which landing files a partition holds, reading them in every format, and pseudonymising ids."""
