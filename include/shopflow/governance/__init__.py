"""Catalogue governance: the repair, the review loop, brand fills, price checks and near-duplicates."""
