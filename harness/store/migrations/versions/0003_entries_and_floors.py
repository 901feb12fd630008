"""entries, settings, size columns, no-skill floors, data file hashes

Runs get ``entry_id``, ``setting_id`` and ``task_id`` (hashes of parts of the stored config,
see harness.identity), ``d_model``/``n_layers``/``n_heads`` and the no-skill ``floor``;
evaluations get ``data_sha256``.  Existing runs are filled from the config they kept, so
their scores and ids stay as they were; their floor stays NULL (the ranking then uses
``chance``) until ``archbench db upgrade`` recomputes it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

from harness.identity import identity_columns

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_NEW = ('entry_id', 'setting_id', 'task_id', 'd_model', 'n_layers', 'n_heads')


def upgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entry_id', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('setting_id', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('task_id', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('d_model', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('n_layers', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('n_heads', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('floor', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('floor_strategy', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_runs_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_setting_id'), ['setting_id'], unique=False)
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_sha256', sa.String(length=64), nullable=True))

    runs = sa.table('runs', sa.column('id', sa.String), sa.column('config', sa.JSON),
                    *(sa.column(c) for c in _NEW))
    conn = op.get_bind()
    rows = conn.execute(sa.select(runs.c.id, runs.c.config)).all()
    for run_id, config in rows:
        conn.execute(runs.update().where(runs.c.id == run_id).values(**identity_columns(config or {})))


def downgrade() -> None:
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_column('data_sha256')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_setting_id'))
        batch_op.drop_index(batch_op.f('ix_runs_entry_id'))
        for c in ('floor_strategy', 'floor') + tuple(reversed(_NEW)):
            batch_op.drop_column(c)
