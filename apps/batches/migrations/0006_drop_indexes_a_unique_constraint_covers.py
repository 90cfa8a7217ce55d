# Each of these foreign keys had an index of its own that a unique constraint's index already
# begins with. The model state changes (db_index=False); the database only drops the indexes
# (Django's own AlterField would also drop and re-add each foreign key, validating every row
# under a lock).

import django.db.models.deletion
from django.db import migrations, models


INDEXES = [
    ("batches_candidate", "batches_candidate_prompt_id_19e79639", "prompt_id"),
    ("batches_comparison", "batches_comparison_candidate_a_id_96f285d4", "candidate_a_id"),
    ("batches_prompt", "batches_prompt_project_id_3252f3db", "project_id"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0005_batch_source_parts"),
        ("projects", "0003_annotatoraccount"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.AlterField(
            model_name="candidate",
            name="prompt",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="candidates",
                to="batches.prompt",
            ),
        ),
        migrations.AlterField(
            model_name="comparison",
            name="candidate_a",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="batches.candidate",
            ),
        ),
        migrations.AlterField(
            model_name="prompt",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="prompts",
                to="projects.project",
            ),
        ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")',
                )
                for table, index, column in INDEXES
            ],
        )
    ]
