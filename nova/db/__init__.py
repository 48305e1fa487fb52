"""The database: models, the SQL API, and the alembic migrations."""
