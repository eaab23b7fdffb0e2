"""BigQuery SQL over the local warehouse, read-only. The library behind the CLI's query command.

Queries written for BigQuery (like the seed documents' ones) run unchanged apart from the table name:
sqlglot translates BigQuery SQL to DuckDB SQL, and table names resolve to the warehouse the emulator
writes for `bq://PROJECT.DATASET.TABLE` (one DuckDB file per project, attached read-only under the
project's name): `project.dataset.table`, backticked (`` `project.dataset.table` ``,
`` `project`.dataset.table ``) or legacy SQL's `[project:dataset.table]`; `dataset.table` uses
`default_project`, or the only project there is.
"""

from __future__ import annotations

import os
import re
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp

from .warehouse import READ_LOCK_TIMEOUT, connect_read_only, project_databases

# Legacy SQL table reference: [project:dataset.table], project possibly domain-scoped (example.com:proj).
_LEGACY_TABLE = re.compile(r"\[((?:[\w.\-]+:)?[\w.\-]+):(\w+)\.([\w\- ]+)\]")


class QueryError(Exception):
    """The query could not be translated or run; the message says why (and shows the DuckDB SQL if any)."""


def translate(sql: str, data_dir: str | os.PathLike[str] | None = None, default_project: str | None = None) -> str:
    """The DuckDB SQL for one BigQuery statement, with its tables resolved to the warehouse catalogs."""
    sql = _LEGACY_TABLE.sub(lambda m: f"`{m[1]}.{m[2]}.{m[3]}`", sql)
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        raise QueryError(f"cannot parse the query as BigQuery SQL: {exc}") from None
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise QueryError("only queries (SELECT …) can run against the warehouse; it is read-only")
    ctes = {cte.alias_or_name.lower() for cte in statement.find_all(exp.CTE)}
    for table in statement.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue  # table functions and the like: left to DuckDB (which has file access turned off)
        if not table.args.get("db"):
            if table.name.lower() in ctes:
                continue
            raise QueryError(f"table {table.name!r} needs a dataset: write dataset.table or project.dataset.table")
        if not table.args.get("catalog"):
            project = default_project or _only_project(data_dir)
            if project is None:
                raise QueryError(f"table {table.sql('bigquery')} needs a project: write project.dataset.table")
            table.set("catalog", exp.to_identifier(project))
        for part in ("catalog", "db", "this"):
            table.args[part].set("quoted", True)  # project IDs have dashes; DuckDB needs them quoted
    _name_like_bigquery(statement)
    return statement.sql(dialect="duckdb")


def _name_like_bigquery(statement: exp.Query) -> None:
    """Unnamed result columns get BigQuery's names f0_, f1_, … instead of DuckDB's expression text."""
    select = statement
    while isinstance(select, exp.SetOperation):
        select = select.this  # a UNION takes its column names from the first query
    if not isinstance(select, exp.Select):
        return
    unnamed = 0
    for expression in list(select.expressions):
        if isinstance(expression, (exp.Alias, exp.Column, exp.Star, exp.Dot)):
            continue
        expression.replace(exp.alias_(expression.copy(), f"f{unnamed}_"))
        unnamed += 1


def _only_project(data_dir: str | os.PathLike[str] | None) -> str | None:
    projects = list(project_databases(data_dir)) if data_dir is not None else []
    return projects[0] if len(projects) == 1 else None


def run_query(data_dir: str | os.PathLike[str], sql: str, *, default_project: str | None = None,
              timeout: float = READ_LOCK_TIMEOUT) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run one BigQuery-dialect query against the warehouse under `data_dir`; return (column names, rows).

    The connection is read-only (the databases are attached READ_ONLY and DuckDB's file access is off),
    so a query can neither change the warehouse nor read or write other files. While the emulator is
    writing a table the attach waits up to `timeout` seconds.
    """
    duck_sql = translate(sql, data_dir, default_project)
    con = connect_read_only(data_dir, timeout)
    try:
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            cursor = con.execute(duck_sql)
            columns = [d[0] for d in cursor.description or []]
            return columns, cursor.fetchall()
        except duckdb.Error as exc:
            raise QueryError(f"{exc}\n(DuckDB SQL: {duck_sql})") from None
    finally:
        con.close()
