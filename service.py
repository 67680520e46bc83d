"""What a process of the service holds: its config, its executor, its database."""
from __future__ import annotations

from dataclasses import dataclass, field

from config import Config
from executor import Executor, get_executor
from mongo_manager import MongoManager, get_mongo


@dataclass
class Service:
    config: Config
    executor: Executor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = get_executor(self.config)

    def mongo(self) -> MongoManager:
        # Lazy and per process: gunicorn forks workers after loading nothing.
        return get_mongo(self.config)
