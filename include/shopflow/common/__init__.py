"""Leaf helpers every layer may use: storage (local paths or fsspec URLs), the landing-file contract, lake
Parquet I/O, text normalisation, redaction of secrets, and the shared exceptions."""
