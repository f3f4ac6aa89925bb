"""The shopflow metadata store: what every task did, on SQLite or PostgreSQL, chosen by one URL."""
