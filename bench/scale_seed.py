"""Data of the ``scale`` scenario, put into the bench database once.

Run by ``bench/scenarios/scale.py`` with the gateway's environment and code
(``python bench/scale_seed.py COMMAND``, cwd = the code under test); prints
one JSON object. Idempotent: what is already there is kept, so a second run
costs seconds, not the minutes the 10,000,000 usage rows take.

- ``keys N TEAMS TRAFFIC OUT``: N API keys over TEAMS teams (``scale-t000``
  ...; a team holds at most 1,000 keys), bulk-inserted with deterministic
  plaintexts (the bench's keys are not secrets), and the first TRAFFIC
  plaintexts written to OUT, one a line, for the load script.
- ``usage ROWS DAYS``: ROWS usage records over the last DAYS days, half in
  ``scale-t000`` (the dashboard's team), the rest over the other scale
  teams, inserted by PostgreSQL itself (``INSERT ... SELECT`` over
  ``generate_series``, one statement per million rows: no ORM objects and
  no per-row round trip), in time order as a gateway writes them.
- ``session``: a dashboard user owning ``scale-t000``; prints its session
  cookie and a generation id of that team for ``/api/v1/generation``.
- ``rollup DAYS``: rolls up, once, each of the last DAYS days that has no
  complete roll-up yet, then times ``usage_rollup_recent``, the periodic job
  (today and yesterday): the state production is in, every past day rolled
  up and only the records since the job's last run raw.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xrouter_site.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import Membership, Team, User  # noqa: E402
from keys import tokens  # noqa: E402
from keys.models import ApiKey  # noqa: E402
from routing.models import UsageRecord  # noqa: E402
from routing.usage import rollups  # noqa: E402

TEAM_PREFIX = "scale-t"
KEYS_PER_TEAM = 1000
MARK = "scale-"  # request_id prefix of the seeded usage rows


def _plaintext(n: int) -> str:
    seed = int.from_bytes(hashlib.sha256(f"xrouter-bench-scale-{n}".encode()).digest(), "big")
    payload = tokens._base62(seed, tokens.PAYLOAD_LEN)
    return f"xr_live_{payload}{tokens._checksum(payload)}"


def _teams(count: int) -> list[Team]:
    slugs = [f"{TEAM_PREFIX}{i:03d}" for i in range(count)]
    have = {t.slug for t in Team.objects.filter(slug__in=slugs)}
    Team.objects.bulk_create(
        [Team(name=slug, slug=slug) for slug in slugs if slug not in have], batch_size=1000
    )
    by_slug = {t.slug: t for t in Team.objects.filter(slug__in=slugs)}
    return [by_slug[s] for s in slugs]


def seed_keys(total: int, team_count: int, traffic: int, out: Path) -> dict[str, Any]:
    started = time.monotonic()
    if total > team_count * KEYS_PER_TEAM:
        raise SystemExit(f"{total} keys need at least {total // KEYS_PER_TEAM} teams")
    teams = _teams(team_count)
    plaintexts = [_plaintext(n) for n in range(total)]
    digests = [tokens.digest(p) for p in plaintexts]
    existing: set[str] = set()
    for start in range(0, total, 10000):
        existing.update(
            ApiKey.objects.filter(key_hash__in=digests[start : start + 10000]).values_list(
                "key_hash", flat=True
            )
        )
    missing = [
        ApiKey(
            team=teams[n // KEYS_PER_TEAM],
            name=f"scale key {n}",
            key_hash=digests[n],
            prefix=plaintexts[n][: tokens.DISPLAY_PREFIX_LEN],
            last4=plaintexts[n][-4:],
        )
        for n in range(total)
        if digests[n] not in existing
    ]
    ApiKey.objects.bulk_create(missing, batch_size=5000)
    # The traffic keys are spread over every team, not the first ten.
    step = max(1, total // traffic)
    out.write_text("\n".join(plaintexts[n] for n in range(0, total, step)[:traffic]) + "\n")
    return {
        "keys": ApiKey.objects.filter(team__slug__startswith=TEAM_PREFIX).count(),
        "teams": len(teams),
        "created_now": len(missing),
        "traffic_keys": min(traffic, len(range(0, total, step))),
        "seconds": round(time.monotonic() - started, 1),
    }


_INSERT = """
INSERT INTO {table} (
    request_id, generation_id, correlation_id, upstream_id, usage_anomaly, created_at,
    team_id, key_id, oauth_app, endpoint, requested_model, served_model, model_version,
    provider, deployment_id, attempts, prompt_tokens, completion_tokens, cached_tokens,
    cost_rub, status, error_code, latency_ms, ttft_ms, stream, stream_complete,
    finish_reason, pii_counts
)
SELECT
    %(mark)s || g, 'gen-scale-' || g, CASE WHEN g %% 10 = 0 THEN 'corr-' || g ELSE '' END,
    'chatcmpl-' || g, '', %(t0)s::timestamptz + (g - 1) * %(step)s * interval '1 second',
    k.team_id, k.id, '', 'chat', m.model, m.model, '', 'bench', NULL, '[]'::jsonb,
    10 + g %% 500, 20 + g %% 700, 0, ((10 + g %% 500) * 0.0005 + (20 + g %% 700) * 0.0015),
    CASE WHEN g %% 50 = 0 THEN 502 ELSE 200 END,
    CASE WHEN g %% 50 = 0 THEN 'upstream_unreachable' ELSE '' END,
    20 + g %% 900, CASE WHEN g %% 3 = 0 THEN 5 + g %% 300 END, g %% 3 = 0,
    CASE WHEN g %% 3 = 0 THEN true END, 'stop', '{{}}'::jsonb
FROM generate_series(%(first)s, %(last)s) AS g
JOIN LATERAL (
    SELECT team_id, id FROM {keys} WHERE id = CASE
        WHEN g %% 2 = 0 THEN %(home_first)s + (g / 2) %% %(home_count)s
        ELSE %(rest_first)s + (g / 2) %% %(rest_count)s END
) AS k ON true
CROSS JOIN LATERAL (
    SELECT 'scale/m' || lpad((g %% 1000)::text, 4, '0') AS model
) AS m
"""


def seed_usage(rows: int, days: int) -> dict[str, Any]:
    started = time.monotonic()
    table, keys = UsageRecord._meta.db_table, ApiKey._meta.db_table
    home = ApiKey.objects.filter(team__slug=f"{TEAM_PREFIX}000").order_by("id")
    rest = ApiKey.objects.filter(team__slug__startswith=TEAM_PREFIX).exclude(
        team__slug=f"{TEAM_PREFIX}000"
    )
    home_ids = list(home.values_list("id", flat=True))
    rest_ids = sorted(rest.values_list("id", flat=True))
    # The keys were bulk-inserted in order, so each team's ids are one run.
    if home_ids != list(range(home_ids[0], home_ids[0] + len(home_ids))) or rest_ids != list(
        range(rest_ids[0], rest_ids[0] + len(rest_ids))
    ):
        raise SystemExit("scale keys are not contiguous ids; drop the scale teams and reseed")
    have = UsageRecord.objects.filter(request_id__startswith=MARK).count()
    # Rows go in in time order, as a gateway writes them: a day's records
    # then share heap pages, as in production. (Spread at random over the
    # 30 days, each record of a day sat on its own page and one roll-up of a
    # day read 330,000 random pages.) A resumed seed continues the timeline.
    first_row = UsageRecord.objects.filter(request_id=f"{MARK}1").values("created_at").first()
    t0 = first_row["created_at"] if first_row else timezone.now() - timedelta(days=days)
    batch = 1_000_000
    for first in range(have + 1, rows + 1, batch):
        last = min(rows, first + batch - 1)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                _INSERT.format(table=table, keys=keys),
                {
                    "mark": MARK,
                    "t0": t0,
                    "step": days * 86400 / rows,
                    "first": first,
                    "last": last,
                    "home_first": home_ids[0],
                    "home_count": len(home_ids),
                    "rest_first": rest_ids[0],
                    "rest_count": len(rest_ids),
                },
            )
        print(f"usage rows {last:,} of {rows:,}", file=sys.stderr, flush=True)
    if have < rows:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")
    return {
        # Counting 10M rows again takes seconds: the ids are 1..rows.
        "rows": max(have, rows),
        "inserted_now": max(0, rows - have),
        "days": days,
        "seconds": round(time.monotonic() - started, 1),
    }


def session() -> dict[str, Any]:
    team = Team.objects.get(slug=f"{TEAM_PREFIX}000")
    user, _ = User.objects.get_or_create(username="scale-owner", defaults={"email": "s@x.test"})
    Membership.objects.get_or_create(team=team, user=user, defaults={"role": "owner"})
    client = Client()
    client.force_login(user)
    record = (
        UsageRecord.objects.filter(team=team, request_id__startswith=MARK)
        .order_by("-created_at")
        .values("generation_id", "request_id", "key__name")
        .first()
    )
    # /api/v1/generation answers a standard key about its own records only.
    owner = record["key__name"].rsplit(" ", 1)[-1] if record and record["key__name"] else ""
    key = ApiKey.objects.filter(team=team).order_by("id").values("public_id").first()
    return {
        "cookie": f"sessionid={client.cookies['sessionid'].value}",
        "generation_id": record["generation_id"] if record else None,
        "request_id": record["generation_id"] if record else None,
        "key_public_id": str(key["public_id"]) if key else None,
        "generation_key": _plaintext(int(owner)) if owner.isdigit() else None,
        "team_rows": UsageRecord.objects.filter(team=team).count(),
        "team_keys": ApiKey.objects.filter(team=team).count(),
    }


def rollup(days: int) -> dict[str, Any]:
    """Back-fill roll-ups of days that have none (once), then time the periodic job."""
    from routing.models import UsageRollupDay

    today = timezone.now().date()
    # A day rolled up after it ended is complete (the seed adds no rows
    # later); one rolled up while it was today or yesterday is redone.
    complete = {
        day
        for day, rolled_at in UsageRollupDay.objects.values_list("day", "rolled_at")
        if rolled_at >= rollups.day_bounds(day)[1]
    }
    backfill = []
    for back in range(2, days + 1):
        day = today - timedelta(days=back)
        if day in complete:
            continue
        started = time.monotonic()
        result = rollups.usage_rollup_day(day=day)
        backfill.append(
            {"day": str(day), "seconds": round(time.monotonic() - started, 2), "rows": result.rows}
        )
        print(f"rolled up {day}: {backfill[-1]}", file=sys.stderr, flush=True)
    started = time.monotonic()
    recent = rollups.usage_rollup_recent()
    return {
        "backfilled_now": backfill,
        "recent_s": round(time.monotonic() - started, 2),
        "recent": [{"day": str(r.day), "records": r.records, "rows": r.rows} for r in recent],
    }


def main() -> None:
    command, *args = sys.argv[1:]
    if command == "keys":
        result = seed_keys(int(args[0]), int(args[1]), int(args[2]), Path(args[3]))
    elif command == "usage":
        result = seed_usage(int(args[0]), int(args[1]))
    elif command == "session":
        result = session()
    elif command == "rollup":
        result = rollup(int(args[0]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
