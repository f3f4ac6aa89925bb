"""Pipeline steps, the composition root the operators and the CLI call: a partition's land-to-validate steps
(partition) and the day's model branch (model_branch)."""
