"""Alembic environment: runs on the connection omr_tus.db.migrate hands over (under its
advisory lock), or on its own async engine when alembic is called directly."""

import asyncio

from alembic import context

from omr_tus.db.models import Base

target_metadata = Base.metadata


def run_on(connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_standalone() -> None:
    from omr_tus.config import Settings
    from omr_tus.db.engine import make_engine

    async def main() -> None:
        engine = make_engine(Settings.load().database_url)
        async with engine.connect() as conn:
            await conn.run_sync(run_on)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    run_standalone()
