"""lm-eval benchmark scores

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('benchmark_scores',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model', sa.String(length=1024), nullable=False),
    sa.Column('model_kind', sa.String(length=16), nullable=False),
    sa.Column('model_sha256', sa.String(length=64), nullable=True),
    sa.Column('label', sa.String(length=256), nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=True),
    sa.Column('benchmark', sa.String(length=128), nullable=False),
    sa.Column('group', sa.String(length=128), nullable=True),
    sa.Column('metric', sa.String(length=128), nullable=False),
    sa.Column('filter', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('stderr', sa.Float(), nullable=True),
    sa.Column('higher_is_better', sa.Boolean(), nullable=True),
    sa.Column('n_samples', sa.Integer(), nullable=True),
    sa.Column('num_fewshot', sa.Integer(), nullable=True),
    sa.Column('limit', sa.Float(), nullable=True),
    sa.Column('task_version', sa.String(length=32), nullable=True),
    sa.Column('lm_eval_version', sa.String(length=32), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('environment_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('benchmark_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benchmark_scores_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmark_scores_model_sha256'), ['model_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmark_scores_run_id'), ['run_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmark_scores_benchmark'), ['benchmark'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('benchmark_scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benchmark_scores_benchmark'))
        batch_op.drop_index(batch_op.f('ix_benchmark_scores_run_id'))
        batch_op.drop_index(batch_op.f('ix_benchmark_scores_model_sha256'))
        batch_op.drop_index(batch_op.f('ix_benchmark_scores_model'))
    op.drop_table('benchmark_scores')
