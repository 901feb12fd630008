"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('environments',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('git_sha', sa.String(length=40), nullable=True),
    sa.Column('git_dirty', sa.Boolean(), nullable=True),
    sa.Column('archbench_version', sa.String(length=32), nullable=False),
    sa.Column('python_version', sa.String(length=32), nullable=False),
    sa.Column('torch_version', sa.String(length=64), nullable=False),
    sa.Column('triton_version', sa.String(length=32), nullable=True),
    sa.Column('platform', sa.String(length=128), nullable=False),
    sa.Column('device', sa.String(length=16), nullable=False),
    sa.Column('cpu_name', sa.String(length=128), nullable=True),
    sa.Column('gpu_name', sa.String(length=128), nullable=True),
    sa.Column('num_threads', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('evaluations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('checkpoint_sha256', sa.String(length=64), nullable=False),
    sa.Column('checkpoint_path', sa.String(length=1024), nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=True),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('task_config', sa.JSON(), nullable=False),
    sa.Column('data_file', sa.String(length=1024), nullable=True),
    sa.Column('split', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('n_examples', sa.Integer(), nullable=False),
    sa.Column('environment_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evaluations_checkpoint_sha256'), ['checkpoint_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_evaluations_run_id'), ['run_id'], unique=False)

    op.create_table('kernel_benchmarks',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('op', sa.String(length=64), nullable=False),
    sa.Column('impl', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('dtype', sa.String(length=16), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('seq_len', sa.Integer(), nullable=False),
    sa.Column('heads', sa.Integer(), nullable=False),
    sa.Column('head_dim', sa.Integer(), nullable=False),
    sa.Column('causal', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('median_ms', sa.Float(), nullable=True),
    sa.Column('p20_ms', sa.Float(), nullable=True),
    sa.Column('p80_ms', sa.Float(), nullable=True),
    sa.Column('tokens_per_s', sa.Float(), nullable=True),
    sa.Column('tflops', sa.Float(), nullable=True),
    sa.Column('peak_fraction', sa.Float(), nullable=True),
    sa.Column('peak_mem_bytes', sa.Integer(), nullable=True),
    sa.Column('device_name', sa.String(length=128), nullable=False),
    sa.Column('git_sha', sa.String(length=40), nullable=True),
    sa.Column('environment_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('kernel_benchmarks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_kernel_benchmarks_op'), ['op'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('arch', sa.String(length=64), nullable=False),
    sa.Column('arch_label', sa.String(length=160), nullable=False),
    sa.Column('size', sa.String(length=32), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('task_setting', sa.String(length=400), nullable=False),
    sa.Column('lr', sa.Float(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('sweep', sa.String(length=128), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('n_params', sa.Integer(), nullable=True),
    sa.Column('metric', sa.String(length=64), nullable=True),
    sa.Column('val_score', sa.Float(), nullable=True),
    sa.Column('test_score', sa.Float(), nullable=True),
    sa.Column('chance', sa.Float(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('host', sa.String(length=128), nullable=True),
    sa.Column('environment_id', sa.String(length=16), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('duration_s', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['environment_id'], ['environments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_arch'), ['arch'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_sweep'), ['sweep'], unique=False)
        batch_op.create_index(batch_op.f('ix_runs_task'), ['task'], unique=False)

    op.create_table('checkpoints',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoints_run_id'), ['run_id'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=16), nullable=False),
    sa.Column('split', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'final', 'split', 'name', 'step', name='uq_metric')
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_run_final', ['run_id', 'final'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_run_final')

    op.drop_table('metrics')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoints_run_id'))

    op.drop_table('checkpoints')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_task'))
        batch_op.drop_index(batch_op.f('ix_runs_sweep'))
        batch_op.drop_index(batch_op.f('ix_runs_status'))
        batch_op.drop_index(batch_op.f('ix_runs_arch'))

    op.drop_table('runs')
    with op.batch_alter_table('kernel_benchmarks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_kernel_benchmarks_op'))

    op.drop_table('kernel_benchmarks')
    with op.batch_alter_table('evaluations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evaluations_run_id'))
        batch_op.drop_index(batch_op.f('ix_evaluations_checkpoint_sha256'))

    op.drop_table('evaluations')
    op.drop_table('environments')
