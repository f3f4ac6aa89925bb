"""The lake: zone and partition paths, and the catalogue as of a day assembled from snapshots and deltas."""
