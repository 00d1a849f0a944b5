"""Migrated PostgreSQL databases that one test process reuses instead of re-creating.

``CREATE DATABASE ... TEMPLATE`` costs 0.2–0.4 s of server time per test (it copies the
whole catalogue); emptying a used copy costs a few milliseconds. After each test its
database is given back: every other connection to it is ended, the tables the test wrote
to are truncated (new, empty files, as in a fresh copy), every sequence restarts, and the
schema's fingerprint (tables, columns, constraints, indexes, triggers and whether they are
enabled, functions, grants, database settings, the Alembic revision) is compared with the
template's. A database that differs in any of these is dropped, never reused: the next
test gets a database indistinguishable from a fresh copy of the template.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

# one line per catalogue fact a test could change; their digest names the schema
# (``%%``: the driver reads ``%`` as a placeholder)
FINGERPRINT = """
SELECT md5(string_agg(line, E'\\n' ORDER BY line)) FROM (
  SELECT 'ns ' || nspname AS line FROM pg_namespace
  UNION ALL SELECT format('rel %%s.%%s %%s %%s %%s', n.nspname, c.relname, c.relkind, c.relacl,
                          c.reloptions)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
  UNION ALL SELECT format('col %%s %%s %%s %%s %%s %%s', a.attrelid::regclass, a.attnum, a.attname,
                          format_type(a.atttypid, a.atttypmod), a.attnotnull,
                          pg_get_expr(d.adbin, d.adrelid))
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT format('con %%s %%s %%s', conrelid::regclass, conname,
                          pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  UNION ALL SELECT format('idx %%s', pg_get_indexdef(i.indexrelid))
    FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
    WHERE c.relnamespace = 'public'::regnamespace
  UNION ALL SELECT format('trg %%s %%s', tgenabled, pg_get_triggerdef(oid))
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL SELECT format('evt %%s %%s %%s', evtname, evtevent, evtenabled) FROM pg_event_trigger
  UNION ALL SELECT format('fn %%s %%s', oid::regprocedure, md5(prosrc))
    FROM pg_proc WHERE pronamespace = 'public'::regnamespace
  UNION ALL SELECT format('set %%s %%s', setrole, setconfig) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
  UNION ALL SELECT format('ver %%s', version_num) FROM alembic_version
) AS catalogue
"""

TABLES = """
SELECT format('%%I.%%I', schemaname, tablename) FROM pg_tables
WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""

RESTART_SEQUENCES = (
    "SELECT count(setval(s.seqrelid, s.seqstart, false)) FROM pg_sequence s"
    " JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace"
)

END_OTHER_CONNECTIONS = (
    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
    " WHERE datname = :name AND pid <> pg_backend_pid()"
)


def unique_database_name(prefix: str) -> str:
    """A database name no other test run on the shared server uses at the same time."""
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:12]}"


class PostgresPool:
    """Copies of one migrated template, handed out one test at a time and emptied after."""

    def __init__(self, server: str, template: str) -> None:
        self._server = server
        self._template = template
        self._admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        self._free: list[str] = []
        self._fingerprint: str | None = None
        self._tables: list[str] = []
        self.created = 0
        self.reused = 0

    def url(self, name: str) -> str:
        return self._server.rsplit("/", 1)[0] + f"/{name}"

    def take(self) -> str:
        """The URL of an empty, migrated database no other test is using."""
        if self._free:
            self.reused += 1
            return self.url(self._free.pop())
        name = unique_database_name("t")
        with self._admin.connect() as connection:
            connection.exec_driver_sql(
                f'CREATE DATABASE "{name}" TEMPLATE "{self._template}" STRATEGY FILE_COPY'
            )
        self.created += 1
        if self._fingerprint is None:
            engine = sa.create_engine(self.url(name), isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as connection:
                    self._fingerprint = str(connection.exec_driver_sql(FINGERPRINT).scalar_one())
                    self._tables = list(connection.exec_driver_sql(TABLES).scalars())
            finally:
                engine.dispose()
        return self.url(name)

    def give_back(self, url: str) -> None:
        """Empty the database for the next test, or drop it if the test changed its schema."""
        name = url.rsplit("/", 1)[1]
        with self._admin.connect() as connection:
            connection.execute(sa.text(END_OTHER_CONNECTIONS), {"name": name})
        if self._empty(url):
            self._free.append(name)
        else:
            self.drop(name)

    def _empty(self, url: str) -> bool:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                if connection.exec_driver_sql(FINGERPRINT).scalar_one() != self._fingerprint:
                    return False
                written = " UNION ALL ".join(
                    f"SELECT '{table}' WHERE EXISTS (SELECT FROM {table})" for table in self._tables
                )
                used = list(connection.exec_driver_sql(written).scalars())
                # the audit tables refuse TRUNCATE through a trigger; as a replica the
                # session fires no ordinary trigger. CASCADE: the (empty) tables whose
                # foreign keys point at a written one are truncated with it
                connection.exec_driver_sql(
                    "BEGIN; SET LOCAL session_replication_role = replica;"
                    + (f" TRUNCATE {', '.join(used)} CASCADE;" if used else "")
                    + f" {RESTART_SEQUENCES}; COMMIT"
                )
                return True
        finally:
            engine.dispose()

    def drop(self, name: str) -> None:
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        while self._free:
            self.drop(self._free.pop())
        self._admin.dispose()
