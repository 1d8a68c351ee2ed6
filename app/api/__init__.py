"""REST API (``/api/v1``): parse input, call a service, map errors. No business rules here."""
