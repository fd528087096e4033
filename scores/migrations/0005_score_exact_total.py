from django.db import migrations, models


class Migration(migrations.Migration):
    # Depends on 0003 only: another branch adds a 0004 (Citus); the merge adds a merge migration.
    dependencies = [
        ("scores", "0004_citus_plain_sequences"),
    ]

    operations = [
        migrations.AddField(
            model_name="score",
            name="exact_total",
            field=models.DecimalField(blank=True, decimal_places=0, max_digits=40, null=True),
        ),
    ]
