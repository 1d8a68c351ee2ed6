"""The engine of the bus: envelopes, partitioning, the event log. Plain Python, no Flask."""
