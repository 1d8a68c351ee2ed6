"""deliveries, delivery_attempts: the row foreign keys replaced by delete triggers

The dispatcher records a delivery row and an attempt row per event sent; each paid a foreign-key check
(the subscription, the delivery), about a third of the database's work per delivery. The recording now
takes a share lock on the subscription once per batch (``app.services.dispatch_record``), and these
triggers keep what ON DELETE CASCADE did: deleting a subscription (itself, or through its stream or
tenant) deletes its deliveries, and deleting a delivery (retention, cascade) deletes its attempts.
docs/performance.md has the measurements.

SQLite: a later batch migration that rebuilds ``deliveries`` must drop ``subscriptions_delete_deliveries``
first and create it again afterwards (SQLite refuses to rename a table while a trigger names a missing one).

Revision ID: c4e7a91d3b20
Revises: b8d41f0c2a6e
Create Date: 2026-11-27 22:20:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'c4e7a91d3b20'
down_revision = 'b8d41f0c2a6e'
branch_labels = None
depends_on = None

# SQLite's foreign keys have no name: batch mode names them by this convention so that one can be dropped.
_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}

# PostgreSQL: statement-level triggers over the deleted rows (one DELETE per statement, not one per row).
_PG_UP = [
    """CREATE FUNCTION deliveries_delete_attempts() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM gone);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER deliveries_delete_attempts AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION deliveries_delete_attempts()""",
    """CREATE FUNCTION subscriptions_delete_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM deliveries WHERE subscription_id IN (SELECT id FROM gone);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER subscriptions_delete_deliveries AFTER DELETE ON subscriptions
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_delete_deliveries()""",
]
_PG_DOWN = [
    "DROP TRIGGER subscriptions_delete_deliveries ON subscriptions",
    "DROP FUNCTION subscriptions_delete_deliveries()",
    "DROP TRIGGER deliveries_delete_attempts ON deliveries",
    "DROP FUNCTION deliveries_delete_attempts()",
]
# SQLite has row triggers only.
_SQLITE_UP = [
    """CREATE TRIGGER deliveries_delete_attempts AFTER DELETE ON deliveries FOR EACH ROW
    BEGIN DELETE FROM delivery_attempts WHERE delivery_id = OLD.id; END""",
    """CREATE TRIGGER subscriptions_delete_deliveries AFTER DELETE ON subscriptions FOR EACH ROW
    BEGIN DELETE FROM deliveries WHERE subscription_id = OLD.id; END""",
]
_SQLITE_DOWN = [
    "DROP TRIGGER subscriptions_delete_deliveries",
    "DROP TRIGGER deliveries_delete_attempts",
]


def _fk_names() -> tuple[str, str]:
    if op.get_bind().dialect.name == "sqlite":
        return "fk_delivery_attempts_delivery_id_deliveries", "fk_deliveries_subscription_id_subscriptions"
    # PostgreSQL's names for the unnamed constraints of the first migration.
    return "delivery_attempts_delivery_id_fkey", "deliveries_subscription_id_fkey"


def upgrade():
    attempts_fk, deliveries_fk = _fk_names()
    with op.batch_alter_table('delivery_attempts', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(attempts_fk, type_='foreignkey')
    with op.batch_alter_table('deliveries', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(deliveries_fk, type_='foreignkey')
    for statement in (_SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _PG_UP):
        op.execute(statement)


def downgrade():
    for statement in (_SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else _PG_DOWN):
        op.execute(statement)
    attempts_fk, deliveries_fk = _fk_names()
    with op.batch_alter_table('deliveries', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.create_foreign_key(deliveries_fk, 'subscriptions', ['subscription_id'], ['id'], ondelete='CASCADE')
    with op.batch_alter_table('delivery_attempts', schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.create_foreign_key(attempts_fk, 'deliveries', ['delivery_id'], ['id'], ondelete='CASCADE')
