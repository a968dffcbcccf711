"""Alembic migrations for the SQL store."""
