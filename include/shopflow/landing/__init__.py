"""Landing data into the landing zone: the demo's sample data, `land --source` exports, the generated search log."""
