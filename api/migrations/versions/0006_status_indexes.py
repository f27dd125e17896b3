"""indexes for the reads of /status: a site's domains and its newest jobs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 07:30:00
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without them every /status scanned the whole domains table and sorted a site's jobs to find the newest.
    op.create_index("ix_domains_service_id", "domains", ["service_id", "id"])
    op.create_index("ix_jobs_service_newest", "jobs", ["service_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_service_newest", table_name="jobs")
    op.drop_index("ix_domains_service_id", table_name="domains")
