"""Fixtures for this area (owned by its area; see tests/conftest.py)."""
