"""kernel benchmarks: peak memory in a 64-bit integer

A GPU kernel's peak memory passes 2**31 bytes (2 GiB) easily; PostgreSQL's INTEGER is 32-bit
and refuses such a row ("integer out of range"). SQLite's integers are 64-bit already, so
there the column is left as it is.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column('kernel_benchmarks', 'peak_mem_bytes', type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.alter_column('kernel_benchmarks', 'peak_mem_bytes', type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=True)
