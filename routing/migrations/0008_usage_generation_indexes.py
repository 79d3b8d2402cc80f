"""Index the generation and correlation ids without locking the table.

PostgreSQL builds both indexes CONCURRENTLY (outside a transaction, so
writes of the running release go on); they are partial, so rows without an
id cost them nothing. SQLite (zero-config) has no concurrent build and no
concurrent writers to spare: a plain CREATE INDEX there.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyWherePossible(AddIndexConcurrently):
    """``AddIndexConcurrently`` on PostgreSQL, a plain ``AddIndex`` elsewhere."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(
            self, app_label, schema_editor, from_state, to_state
        )

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(
            self, app_label, schema_editor, from_state, to_state
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("routing", "0007_usage_generation_id"),
    ]

    operations = [
        AddIndexConcurrentlyWherePossible(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("correlation_id", ""), _negated=True),
                fields=["team", "correlation_id"],
                name="usage_team_correlation",
            ),
        ),
        AddIndexConcurrentlyWherePossible(
            model_name="usagerecord",
            index=models.Index(
                condition=models.Q(("generation_id__isnull", False)),
                fields=["generation_id"],
                name="usage_generation",
            ),
        ),
    ]
