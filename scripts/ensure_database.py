"""Create the PostgreSQL database a URL names if it does not exist yet.

`make migrations-lint` reads the migration recorder, so its database must
exist; on a fresh machine only the maintenance database does (pytest-django
creates just ``test_<name>``). Usage: ``python scripts/ensure_database.py URL``.
"""

from __future__ import annotations

import sys

import psycopg2
from psycopg2 import sql


def ensure(url: str) -> None:
    params = psycopg2.extensions.parse_dsn(url)
    name = params.pop("dbname", "")
    if not name:
        raise SystemExit(f"no database name in {url!r}")
    conn = psycopg2.connect(dbname="postgres", **params)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                print(f"created database {name}")
    finally:
        conn.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: ensure_database.py postgres://user@host:port/name")
    ensure(sys.argv[1])
