"""What a web process of the service holds (its config, its job notifier, its
database, its models), and ``service()``: the one typed way a route gets it."""
from __future__ import annotations

from dataclasses import dataclass, field

from flask import current_app

from annotation.registry import ModelRegistry, get_registry
from config import Config
from engines.engine import JobNotifier, get_notifier
from mongo_manager import MongoManager, get_mongo


@dataclass
class Service:
    config: Config
    notifier: JobNotifier = field(init=False)

    registry: ModelRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.notifier = get_notifier(self.config)
        # Every registered model version is checked now: a bad manifest stops start-up.
        self.registry = get_registry(self.config.annotation)

    def mongo(self) -> MongoManager:
        # Lazy and per process: gunicorn forks workers after loading nothing.
        return get_mongo(self.config)


def service() -> Service:
    """The Service of the app handling this request."""
    return current_app.config["SERVICE"]
