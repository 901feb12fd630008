"""probe benchmarks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('probe_benchmarks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('preset', sa.String(length=64), nullable=False),
    sa.Column('tokens', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('tokens_per_s', sa.Float(), nullable=False),
    sa.Column('environment_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('probe_benchmarks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_probe_benchmarks_task'), ['task'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('probe_benchmarks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_probe_benchmarks_task'))

    op.drop_table('probe_benchmarks')
