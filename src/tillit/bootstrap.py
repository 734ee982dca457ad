"""The composition root: the one place where settings, database, clock and ids are wired."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tillit.adapters.db.engine import Database, make_engine
from tillit.config import Settings
from tillit.domain.clock import Clock, SystemClock
from tillit.domain.ids import IdGenerator
from tillit.services.context import Deps


@dataclass
class Container:
    settings: Settings
    db: Database
    deps: Deps


def build(
    settings: Settings | None = None, *, clock: Clock | None = None, rng: random.Random | None = None
) -> Container:
    settings = settings or Settings.from_env()
    if settings.is_sqlite:
        settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, pool_size=settings.db_pool_size
    )
    clock = clock or SystemClock()
    return Container(
        settings=settings, db=Database(engine), deps=Deps(clock=clock, ids=IdGenerator(clock, rng))
    )
