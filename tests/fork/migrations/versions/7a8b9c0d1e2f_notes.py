"""notes

Revision ID: 7a8b9c0d1e2f
Revises: 3f1a2b4c5d6e
Create Date: 2026-11-09 10:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = "7a8b9c0d1e2f"
down_revision = "3f1a2b4c5d6e"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("body", sa.String(length=280), nullable=False),
        sa.Column("timestamp", sa.DateTime(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_note_timestamp"), ["timestamp"], unique=False)
        batch_op.create_index(batch_op.f("ix_note_user_id"), ["user_id"], unique=False)


def downgrade():
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_note_user_id"))
        batch_op.drop_index(batch_op.f("ix_note_timestamp"))
    op.drop_table("note")
