"""deliveries: no tenant foreign key, partial due and key-status indexes

The dispatcher inserts a delivery row per event sent; each row paid a foreign-key check on the tenant
(redundant: the subscription's key cascades from the tenant already) and two index entries that only
retrying, waiting and dead rows need. docs/performance.md has the measurements.

Revision ID: b8d41f0c2a6e
Revises: 29282275221b
Create Date: 2026-11-27 20:10:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b8d41f0c2a6e'
down_revision = '29282275221b'
branch_labels = None
depends_on = None

# SQLite's foreign keys have no name: batch mode names them by this convention so that one can be dropped.
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_DUE = sa.text("next_attempt_at IS NOT NULL")
_UNSETTLED = sa.text("status IN ('retrying', 'waiting', 'dead')")


def _fk_name() -> str:
    if op.get_bind().dialect.name == "sqlite":
        return "fk_deliveries_tenant_id_tenants"
    return "deliveries_tenant_id_fkey"  # PostgreSQL's name for the unnamed constraint of the first migration


def upgrade():
    with op.batch_alter_table('deliveries', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(_fk_name(), type_='foreignkey')
        batch_op.drop_index('ix_deliveries_due')
        batch_op.drop_index('ix_deliveries_sub_key_status')
        batch_op.create_index('ix_deliveries_due', ['status', 'next_attempt_at'], unique=False,
                              postgresql_where=_DUE, sqlite_where=_DUE)
        batch_op.create_index('ix_deliveries_sub_key_status', ['subscription_id', 'event_key', 'status'],
                              unique=False, postgresql_where=_UNSETTLED, sqlite_where=_UNSETTLED)


def downgrade():
    with op.batch_alter_table('deliveries', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_index('ix_deliveries_sub_key_status')
        batch_op.drop_index('ix_deliveries_due')
        batch_op.create_index('ix_deliveries_sub_key_status', ['subscription_id', 'event_key', 'status'],
                              unique=False)
        batch_op.create_index('ix_deliveries_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_foreign_key(_fk_name(), 'tenants', ['tenant_id'], ['id'], ondelete='CASCADE')
