"""xrouter_site.database_url: libpq host lists in DATABASE_URL (HA PostgreSQL)."""

from __future__ import annotations

import os

import psycopg2
import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.gateway_process import free_port
from xrouter_site.database_url import parse


def test_a_single_host_url_is_parsed_as_before() -> None:
    config = parse("postgres://u:pw@db:6432/xr?sslmode=require", conn_max_age=60)
    assert (config["HOST"], config["PORT"], config["NAME"], config["USER"]) == (
        "db",
        6432,
        "xr",
        "u",
    )
    assert config["OPTIONS"] == {"sslmode": "require"}
    assert config["CONN_MAX_AGE"] == 60


def test_a_host_list_goes_to_libpq_as_comma_lists() -> None:
    config = parse(
        "postgres://app:p%40ss@db-a:5432,db-b,[fd00::3]:5433/xrouter"
        "?target_session_attrs=read-write"
    )
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["HOST"] == "db-a,db-b,fd00::3"
    assert config["PORT"] == "5432,5432,5433"
    assert (config["NAME"], config["USER"], config["PASSWORD"]) == ("xrouter", "app", "p@ss")
    assert config["OPTIONS"] == {"target_session_attrs": "read-write"}


@pytest.mark.parametrize(
    "url",
    ["postgres://u@a:5432,:5433/x", "postgres://u@a:5432,b:port/x", "mysql://u@a:1,b:2/x"],
)
def test_bad_host_lists_are_refused(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        parse(url)


def test_libpq_skips_a_dead_host_to_the_writable_one() -> None:
    """What a failover looks like to the gateway: the first host is gone."""
    real = psycopg2.extensions.parse_dsn(
        psycopg2.extensions.make_dsn(os.environ.get("DATABASE_URL", ""))
    )
    if "host" not in real:
        pytest.skip("needs DATABASE_URL of the test PostgreSQL")
    dead = free_port()
    config = parse(
        f"postgres://{real.get('user', 'postgres')}@127.0.0.1:{dead},"
        f"{real['host']}:{real.get('port', '5432')}/{real['dbname']}"
        "?target_session_attrs=read-write"
    )
    conn = psycopg2.connect(
        host=config["HOST"],
        port=config["PORT"],
        user=config["USER"],
        dbname=config["NAME"],
        connect_timeout=3,
        **config["OPTIONS"],
    )
    try:
        assert conn.info.port == int(real.get("port", "5432"))
    finally:
        conn.close()
