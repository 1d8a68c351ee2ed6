"""Helpers that start the real parts the tests use (PostgreSQL databases, a Kafka-protocol broker)."""
