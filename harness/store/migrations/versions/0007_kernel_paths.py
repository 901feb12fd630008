"""which kernel path ran: the mode asked for (environments.kernels) and each op's path (runs.kernel_paths)

``ARCHBENCH_KERNELS`` (or an architecture's ``kernels`` option) chooses between the Triton and
the torch implementation of every mixer op, and ``auto`` may fall back to torch when a Triton
launch does not fit the device. A number is only comparable with another if both say which
code produced them. Older rows have NULL (they ran ``auto``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('environments') as batch:
        batch.add_column(sa.Column('kernels', sa.String(length=16), nullable=True))
    with op.batch_alter_table('runs') as batch:
        batch.add_column(sa.Column('kernel_paths', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as batch:
        batch.drop_column('kernel_paths')
    with op.batch_alter_table('environments') as batch:
        batch.drop_column('kernels')
