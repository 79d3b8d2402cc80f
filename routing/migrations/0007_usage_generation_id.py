"""Give usage records the gateway's own key (expand step of expand/contract).

Until now the client's ``X-Request-ID`` was the unique key of a usage
record, so a client could merge its requests into one record or shadow
another team's. This migration only *adds*:

- ``generation_id`` (nullable): the gateway-issued ``gen-...`` id;
- ``correlation_id``: the X-Request-ID, searchable;
- ``upstream_id``, ``usage_anomaly``;

(the text columns with a database default, so an insert that names none of
them still works)
and backfills ``generation_id`` and ``correlation_id`` from ``request_id``
for existing rows, in batches that commit one by one (the migration is not
atomic, so no long transaction holds the table), so old ids keep answering
``/api/v1/generation``. Migration 0008 adds their indexes CONCURRENTLY. Nothing is dropped or made stricter: workers of the
previous release keep inserting with ``ON CONFLICT (request_id)`` during a
rolling deploy (their rows get ``generation_id`` NULL and are still found by
``request_id``), and this release writes the generation id into
``request_id`` as well: the old unique index keeps every key unique, so
this release needs no new unique constraint.

Contract step (a later release, once no old worker runs): backfill any row
still without ``generation_id``, build a unique index on it CONCURRENTLY,
switch ON CONFLICT to it, then drop ``request_id``.
"""

from django.db import migrations, models
from django.db.models import F

BATCH = 5000


def backfill(apps, schema_editor):
    UsageRecord = apps.get_model("routing", "UsageRecord")
    todo = UsageRecord.objects.filter(generation_id__isnull=True)
    last = 0
    while True:
        ids = list(todo.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not ids:
            return
        UsageRecord.objects.filter(pk__in=ids).update(
            generation_id=F("request_id"), correlation_id=F("request_id")
        )
        last = ids[-1]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("accounts", "0003_team_limits_and_budget"),
        ("routing", "0006_deployment_residency_usage_pii"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagerecord",
            name="generation_id",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="correlation_id",
            field=models.CharField(blank=True, db_default="", max_length=128),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="upstream_id",
            field=models.CharField(blank=True, db_default="", max_length=200),
        ),
        migrations.AddField(
            model_name="usagerecord",
            name="usage_anomaly",
            field=models.CharField(blank=True, db_default="", max_length=200),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
