"""The metadata database (feature and model registries, analysts' score tables): SQLite in the
data directory by default, any SQLAlchemy URL (PostgreSQL) by setting. Each registry keeps its
schema version in its own table and moves it by appended migrations, one transaction each."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tideline.core.errors import RegistryError

Migration = Callable[[Connection], None]

SQLITE_BUSY_SECONDS = 60
"""How long a SQLite writer waits for another process's write lock before `database is locked`
(Python's default, 5 s, is shorter than one slow fsync on a busy disk)."""


def database_url(settings: Any) -> str:
    """`registry_url` when set, else `registry.db` in the data directory."""
    if settings.registry_url is not None:
        return settings.registry_url.get_secret_value()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.data_dir / 'registry.db').resolve()}"


def shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    return sa.engine.make_url(url).render_as_string()


def open_database(url: str, schema: str, migrations: Sequence[Migration]) -> Engine:
    """An engine on `url` whose `schema` (a version table) is brought up to date."""
    try:
        sqlite = sa.engine.make_url(url).get_backend_name() == "sqlite"
        engine = sa.create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_SECONDS} if sqlite else {})
        migrate(engine, schema, migrations)
    except sa.exc.SQLAlchemyError as exc:
        raise RegistryError(f"cannot open the metadata database at {shown(url)}: "
                            f"{exc.__class__.__name__}: {exc}") from exc
    return engine


def schema_version(engine: Engine, schema: str) -> int:
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(schema):
            return 0
        return connection.execute(sa.text(f"SELECT version FROM {schema}")).scalar() or 0


def migrate(engine: Engine, schema: str, migrations: Sequence[Migration]) -> None:
    current = schema_version(engine, schema)
    if current > len(migrations):
        raise RegistryError(f"{schema} in {shown(str(engine.url))} has schema version {current}, "
                            f"newer than this tideline knows ({len(migrations)}); upgrade "
                            "tideline")
    table = sa.Table(schema, sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))
    for version in range(current, len(migrations)):
        with engine.begin() as connection:
            migrations[version](connection)
            table.create(connection, checkfirst=True)
            connection.execute(sa.delete(table))
            connection.execute(sa.insert(table).values(version=version + 1))
