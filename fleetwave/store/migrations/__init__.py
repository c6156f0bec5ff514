"""Alembic migrations of the campaign state store (run by ``store.db.upgrade_schema``)."""
