"""Persistence: the store contract (base.py) and its SQL implementation (sql/), with migrations."""
