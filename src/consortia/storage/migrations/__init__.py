"""Schema migrations (Alembic), configured in code: no ``alembic.ini`` is needed.

>>> from consortia.storage.db import make_engine
>>> engine = make_engine("sqlite://")
>>> upgrade(engine)
>>> current_revision(engine) == head_revision()
True
>>> engine.dispose()

Every revision runs on SQLite and PostgreSQL (a test upgrades an empty database and one
at the previous revision on both, and compares the result with the tables the code
declares). Write new revisions by hand in ``versions/`` as ``vNNNN_what.py`` with
``revision = "NNNN"``, and keep them frozen: a migration never imports today's tables.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

__all__ = ["alembic_config", "current_revision", "head_revision", "upgrade"]

HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """An Alembic configuration pointing at these migrations, built without a file."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``, in one transaction."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
