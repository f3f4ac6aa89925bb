"""Observability: alerts, OpenLineage facts, the status table and `sources check`'s description."""
