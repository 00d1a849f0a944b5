"""The schema migrations, one module per revision, applied in order by Alembic."""
