"""`lk.catalog`: databases and tables as a principal may see and change them (rule 10).

Every call takes `user=` and goes through the gate: `create` on `*` for a database, `create` on
the database for a table (and select on the location of a registered table, rule 11), `drop` to
drop, `alter` to change properties. Listings show only what the user may describe; a table the
user may not describe fails exactly like a missing one. Answers to users never hold paths, and
numbers about a table (rows, files, bytes, partitions) only when they see all of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from catalog.catalog import Catalog
from catalog.errors import AccessDenied, InvalidArgument, TableExists
from catalog.names import check_ident, split_name
from catalog.partitions import partitions as table_partitions
from catalog.snapshot import Snapshot
from catalog.store import DatabaseInfo, TableInfo
from governance.gate import Audit, Gate
from governance.locations import Locations, resolve
from governance.principal import Principal

Who = Callable[[Any], Principal]  # user= as given (None, a name, a Principal) -> the principal


class GovernedCatalog:
    """The catalog of one lake as each principal may use it."""

    def _public(self, p: Principal, info: TableInfo) -> TableInfo:
        """A catalog entry as `p` may see it: for users without the location and with only
        the columns they may know of (the entry's schema_json holds every column)."""
        if p.privileged:
            return info
        known = {c.lower() for c in self.gate.known_columns(p, info)}
        fields = [f for f in json.loads(info.schema_json) if f["name"].lower() in known]
        parts = tuple(c for c in info.partition_by if c.lower() in known)
        return dataclasses.replace(
            info, location="", schema_json=json.dumps(fields), partition_by=parts
        )

    def __init__(self, gate: Gate, locations: Locations, who: Who):
        self.gate = gate
        self.locations = locations
        self.who = who

    @property
    def raw(self) -> Catalog:
        """The ungoverned catalog (the lake's own code and administrators only)."""
        return self.gate.catalog

    # databases ---------------------------------------------------------------------------------
    def create_database(
        self,
        name: str,
        description: str = "",
        *,
        tags: Mapping[str, str] | None = None,
        exist_ok: bool = False,
        user: Any = None,
    ) -> DatabaseInfo:
        """Create a database (needs create on *)."""
        p = self.who(user)

        def go(_: Audit) -> DatabaseInfo:
            db = check_ident(name, "database")
            existing = self.raw.store.get_database(db)
            if existing is not None and exist_ok and self.gate.may_describe_database(p, db):
                return existing
            self.gate.require(p, "create", "*", "databases")
            if existing is not None and not self.gate.may_describe_database(p, db):
                # Nothing of it is told (not its description, owner or tags).
                raise AccessDenied(f"{p.name} may not create database {db}")
            return self.raw.create_database(
                db, description, owner=p.name, tags=tags, exist_ok=exist_ok
            )

        return self.gate.run(p, "create_database", f"CREATE DATABASE {name}", go)

    def drop_database(
        self, name: str, *, cascade: bool = False, purge: bool = False, user: Any = None
    ) -> None:
        """Drop a database (needs drop on it; with cascade, on each of its tables too)."""
        p = self.who(user)

        def go(_: Audit) -> None:
            self.gate.lookup_database(p, name)
            self.gate.require(p, "drop", name)
            tables = self.raw.list_tables(name)
            if p.privileged:
                return self.raw.drop_database(name, cascade=cascade, purge=purge)
            # Neither the count nor the names of tables the user may not see are told.
            shown = [t for t in tables if self.gate.may_describe(p, t)]
            if shown and not cascade:
                raise InvalidArgument(
                    f"database {name!r} has {len(shown)} table(s); drop them or pass cascade=True"
                )
            if any(not self.gate.allowed(p, t.full_name, "drop") for t in tables) or (
                len(shown) != len(tables)
            ):
                raise AccessDenied(f"{p.name} may not drop database {name} and all of its tables")
            self.raw.drop_database(name, cascade=cascade, purge=purge)

        self.gate.run(p, "drop_database", f"DROP DATABASE {name}", go)

    def list_databases(self, *, user: Any = None) -> list[DatabaseInfo]:
        """The databases the user may know of, by name."""
        p = self.who(user)

        def go(_: Audit) -> list[DatabaseInfo]:
            dbs = self.raw.list_databases()
            return [d for d in dbs if self.gate.may_describe_database(p, d.name)]

        return self.gate.run(p, "list_databases", "LIST DATABASES", go)

    def get_database(self, name: str, *, user: Any = None) -> DatabaseInfo:
        """One database the user may know of."""
        p = self.who(user)

        def go(_: Audit) -> DatabaseInfo:
            self.gate.lookup_database(p, name)
            return self.raw.get_database(name)

        return self.gate.run(p, "describe", f"DESCRIBE DATABASE {name}", go)

    # tables ------------------------------------------------------------------------------------
    def table(self, name: str, *, user: Any = None) -> TableInfo:
        """The catalog entry of a table the user may know of (as `_public` shows it)."""
        p = self.who(user)
        return self._public(p, self.gate.lookup(p, name))

    def snapshot(self, info: TableInfo, version: int | None = None) -> Snapshot:
        """A table's snapshot (for the lake's own code; the entry was looked up governed)."""
        return self.raw.snapshot(info, version)

    def create_table(
        self,
        name: str,
        schema: pa.Schema,
        *,
        partition_by: Sequence[str] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        properties: Mapping[str, str] | None = None,
        exist_ok: bool = False,
        user: Any = None,
    ) -> TableInfo:
        """Create an empty governed Delta table (needs create on its database)."""
        p = self.who(user)

        def go(_: Audit) -> TableInfo:
            db, tbl = split_name(name)
            self.gate.lookup_database(p, db)
            self.gate.require(p, "create", db, f"tables in {db}")
            existing = self.raw.store.get_table(db, tbl)
            if existing is not None and not self.gate.may_describe(p, existing):
                raise AccessDenied(f"{p.name} may not create table {db}.{tbl}")
            info = self.raw.create_table(
                name,
                schema,
                partition_by=partition_by,
                tags=tags,
                description=description,
                owner=p.name,
                properties=properties,
                user=p.name,
                exist_ok=exist_ok,
            )
            return self._public(p, info)

        return self.gate.run(p, "create_table", f"CREATE TABLE {name}", go, table=name)

    def register_table(
        self,
        name: str,
        location: str,
        *,
        governed: bool = False,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        user: Any = None,
    ) -> TableInfo:
        """Adopt an existing Delta table (needs create on the database and, for anyone but
        the owner, select on a `location:` covering it)."""
        p = self.who(user)

        def go(_: Audit) -> TableInfo:
            db, _tbl = split_name(name)
            self.gate.lookup_database(p, db)
            self.gate.require(p, "create", db, f"tables in {db}")
            where = str(location)
            if not p.privileged:
                where = self.locations.check(
                    p.name, where, lambda r: self.gate.allowed(p, r, "select")
                )
            elif self.locations.owns(resolve(where), kinds=("table", "store", "policy")):
                # The owner may adopt a new table inside the root, never a second entry for a
                # table's files (it would read them around that table's policy).
                raise AccessDenied(f"{p.name} may not register the lake's own files as a table")
            if self.raw.store.get_table(db, _tbl) is not None:
                info = self.raw.store.get_table(db, _tbl)
                if info is not None and not self.gate.may_describe(p, info):
                    raise AccessDenied(f"{p.name} may not create table {name}")
                raise TableExists(f"table {name} already exists")
            info = self.raw.register_table(
                name,
                where,
                governed=governed,
                description=description,
                tags=tags,
                owner=p.name,
                user=p.name,
            )
            return self._public(p, info)

        return self.gate.run(p, "register_table", f"REGISTER TABLE {name}", go, table=name)

    def drop_table(self, name: str, *, purge: bool = False, user: Any = None) -> None:
        """Remove a table from the catalog (needs drop); its files stay unless purge=True."""
        p = self.who(user)

        def go(_: Audit) -> None:
            info = self.gate.lookup(p, name)
            self.gate.require(p, "drop", info.full_name)
            self.raw.drop_table(info.full_name, purge=purge)

        self.gate.run(p, "drop_table", f"DROP TABLE {name}", go, table=name)

    def purge_dropped(self, name: str, *, user: Any = None) -> int:
        """Delete the folders dropped tables called `name` left (drop without purge); returns
        how many. Needs drop on the name; the folders of tables in the catalog are never
        touched."""
        p = self.who(user)

        def go(_: Audit) -> int:
            self.gate.require(p, "drop", ".".join(split_name(name)))
            return self.raw.purge_dropped(name)

        return self.gate.run(p, "purge_table", f"PURGE TABLE {name}", go, table=name)

    def set_properties(
        self, name: str, properties: Mapping[str, str | None], *, user: Any = None
    ) -> TableInfo:
        """Set (or, with None, remove) table properties, e.g. compaction.* (needs alter)."""
        p = self.who(user)

        def go(_: Audit) -> TableInfo:
            info = self.gate.lookup(p, name)
            self.gate.require(p, "alter", info.full_name)
            return self._public(p, self.raw.set_properties(info.full_name, properties))

        return self.gate.run(p, "alter", f"SET PROPERTIES {name} {dict(properties)}", go)

    def list_tables(self, database: str | None = None, *, user: Any = None) -> list[TableInfo]:
        """Tables of one database, or of all, that the user may know of."""
        p = self.who(user)

        def go(_: Audit) -> list[TableInfo]:
            if database is not None:
                self.gate.lookup_database(p, database)
            tables = self.raw.list_tables(database)
            return [self._public(p, t) for t in tables if self.gate.may_describe(p, t)]

        return self.gate.run(p, "list_tables", f"LIST TABLES {database or ''}".strip(), go)

    def describe(self, name: str, *, user: Any = None) -> dict[str, Any]:
        """What the catalog knows about a table, as the user may see it: their columns; the
        location only for the owner, sizes only for those who see all of it."""
        p = self.who(user)

        def go(_: Audit) -> dict[str, Any]:
            info = self.gate.lookup(p, name)
            d = self.raw.describe(info.full_name)
            if p.privileged:
                return d
            shown = {c.lower() for c in self.gate.known_columns(p, info)}
            d["columns"] = [c for c in d["columns"] if c["name"].lower() in shown]
            d["partition_by"] = [c for c in d["partition_by"] if c.lower() in shown]
            d.pop("location", None)
            if not self.gate.whole(p, info):
                for k in ("num_files", "num_rows", "size_bytes"):
                    d.pop(k, None)
            return d

        return self.gate.run(p, "describe", f"DESCRIBE {name}", go, table=name)

    def partitions(self, name: str, *, user: Any = None) -> list[dict[str, Any]]:
        """The table's partitions (values, files, rows, bytes), for those who see all of it."""
        p = self.who(user)

        def go(_: Audit) -> list[dict[str, Any]]:
            info = self.gate.lookup(p, name)
            if not self.gate.whole(p, info):
                raise AccessDenied(
                    f"{p.name} may only list the partitions of {info.full_name} with access to "
                    "all of it"
                )
            return table_partitions(self.raw, info.full_name)

        return self.gate.run(p, "describe", f"PARTITIONS {name}", go, table=name)

    def history(
        self, name: str, limit: int | None = None, *, user: Any = None
    ) -> list[dict[str, Any]]:
        """Ratified versions, newest first, with user and operation (parameters, which may
        quote predicates and policy conditions, only for the owner and the system)."""
        p = self.who(user)

        def go(_: Audit) -> list[dict[str, Any]]:
            info = self.gate.lookup(p, name)
            rows = self.raw.history(info.full_name, limit)
            if not p.privileged:
                for r in rows:
                    r.pop("parameters", None)
            return rows

        return self.gate.run(p, "history", f"HISTORY {name}", go, table=name)
