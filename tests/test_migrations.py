"""The Alembic migrations build exactly the schema the models describe, on SQLite and on PostgreSQL."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from api.migrate import current_revision, head_revision, is_current, upgrade
from api.models import Base

pytestmark = pytest.mark.db


def test_migrations_match_the_models(runtime):
    assert is_current(runtime.db)
    with runtime.db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrade_is_idempotent(runtime):
    assert upgrade(runtime.db) == head_revision(runtime.db)
    assert current_revision(runtime.db) == head_revision(runtime.db)
