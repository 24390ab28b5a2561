"""TLS policies: cached MTA-STS policies shared by a fleet, and how each delivery's TLS went

``mta_sts_policies`` holds one fetched MTA-STS policy (RFC 8461) per recipient domain with its
TXT id and expiry (fetched_at + max_age), so every engine of a fleet uses the same policy, a
restart does not refetch every policy, and a policy host that is down does not lift a
policy that is still valid (RFC 8461 5.1).

``deliveries`` records the TLS of the last attempt: ``tls_version`` ("TLSv1.3", NULL for
plaintext or no connection), ``tls_authenticated`` (the peer's certificate checked),
``tls_auth`` (none | pkix | mta-sts | dane: what authenticated it) and ``tls_failure`` (a
policy in mode testing that was not met: delivered all the same, the reason kept here).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mta_sts_policies",
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("policy_id", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(10), nullable=False),
        sa.Column("mx", sa.Text(), nullable=False),
        sa.Column("max_age", sa.Integer(), nullable=False),
        sa.Column("fetched_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("tls_version", sa.String(16), nullable=True))
        batch.add_column(sa.Column("tls_authenticated", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("tls_auth", sa.String(10), nullable=True))
        batch.add_column(sa.Column("tls_failure", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("tls_failure")
        batch.drop_column("tls_auth")
        batch.drop_column("tls_authenticated")
        batch.drop_column("tls_version")
    op.drop_table("mta_sts_policies")
