"""the one-click login key a site holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Sites made before one-click login hold no key: NULL, and their first login link sets one up.
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("login_key_id", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("login_key_id")
