"""SQLAlchemy Core implementation of the store, one schema for SQLite and PostgreSQL."""
