"""site_actions.recover_until: a backoff is undone in steps after it ends

After ``until`` a backoff is not lifted at once: until ``recover_until`` the site's rate and
connections climb back to its own in equal steps (``bulkmail.shaping.backoff``). NULL: lifted
at once, as before.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("site_actions") as batch:
        batch.add_column(sa.Column("recover_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("site_actions") as batch:
        batch.drop_column("recover_until")
