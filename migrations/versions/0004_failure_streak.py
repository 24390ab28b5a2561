"""failure streak: consecutive connection, TLS and policy failures per campaign, in the database

``campaigns.failure_streak`` counts a campaign's consecutive site failures (refused or lost
connections, TLS unavailable, 421, 5.7.x blocks) across engine passes and across every engine
of a fleet; a success resets it, and reaching ``[schedule] pause_after_failures`` pauses the
campaign. Kept in memory per engine before, it restarted at 0 with every pass, so a refusing
host never paused anything.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("failure_streak", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("failure_streak")
