"""site_actions: adaptive backoffs in force on destination sites, shared by a fleet

One row per backoff a reply started (``bulkmail.shaping``): the site ("provider:google" or an
MX set), the rule's name, the action ("suspend" or "throttle" with the lowered rate and
connections) and when it expires. Every engine reads the unexpired rows, so a suspension one
worker set holds for all of them; expired rows are kept as history for ``shaping explain``.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_actions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site", sa.String(500), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("connections", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(100), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("until", sa.Float(), nullable=False),
    )
    op.create_index("ix_site_actions_until", "site_actions", ["until"])


def downgrade() -> None:
    op.drop_index("ix_site_actions_until", table_name="site_actions")
    op.drop_table("site_actions")
