"""Put the distribution column into the primary keys, as Citus requires.

Django keeps a one-column ``id`` (its admin needs one); the database key becomes
(distribution column, id). Ids still come from one sequence, so ``id`` stays unique.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("scores", "0001_initial"), ("rankings", "0001_initial")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE scores_score DROP CONSTRAINT scores_score_pkey, ADD PRIMARY KEY (user_id, id)",
            "ALTER TABLE scores_score DROP CONSTRAINT scores_score_pkey, ADD PRIMARY KEY (id)",
        ),
        migrations.RunSQL(
            "ALTER TABLE rankings_topn DROP CONSTRAINT rankings_topn_pkey, ADD PRIMARY KEY (leaderboard_id, id)",
            "ALTER TABLE rankings_topn DROP CONSTRAINT rankings_topn_pkey, ADD PRIMARY KEY (id)",
        ),
    ]
