"""Alembic migrations (date-prefixed files in `versions/`)."""
