"""outbox: events waiting to be POSTed to the [webhooks] endpoints

One row per event and endpoint, written in the same transaction as the state change it
reports (a delivery sent, deferred, bounced, complained; an unsubscribe; a campaign's new
state), only when ``[webhooks] urls`` is set. ``bulkmail webhooks run`` claims due rows under
a lease (``next_attempt_at`` moved past the lease), POSTs them and deletes a row only when
its endpoint answered 2xx: at-least-once, and the table holds only what is still owed, so
counting it or finding its oldest row stays cheap however many events were ever sent.
Also ``ix_events_kind_created`` for the recent-event counts of ``/metrics``, and
``lists.double_opt_in``: the lists ``serve``'s sign-up form adds confirmed addresses to.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("endpoint", sa.String(length=2000), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
    )
    op.create_index("ix_outbox_due", "outbox", ["next_attempt_at"])
    # /metrics counts the sent and deferred events of the last minute / hour: with this index
    # it reads only those rows, not every event of the window (7M an hour at full speed).
    op.create_index("ix_events_kind_created", "events", ["kind", "created_at"])
    # A list that takes sign-ups from ``serve``'s form only with a confirmed address.
    with op.batch_alter_table("lists") as batch:
        batch.add_column(
            sa.Column("double_opt_in", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("double_opt_in")
    op.drop_index("ix_events_kind_created", table_name="events")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
