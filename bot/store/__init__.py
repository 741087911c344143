"""Persistence: one SQLAlchemy Core `metadata`, an async `Database`, and one table module per concern."""
