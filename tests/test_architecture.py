"""The import rules of the layers (``.importlinter``, README "How it works") hold,
and each one fails when broken.

``lint-imports`` (import-linter, from PATH) checks the packages; the top-level
files (entry points and basics), which import-linter cannot take as packages,
are checked here by reading their imports.
"""
from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGES = ("api", "intake", "engines", "jobs", "processors", "annotation", "datasets", "storage",
            "events")
BASICS = ("mongo_manager", "embedded_db", "config", "settings", "dev_key", "exceptions",
          "job_states", "job_types", "processes", "logging_setup", "backoff", "naming")


def lint_imports(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["lint-imports", "--no-cache"], cwd=folder, capture_output=True,
                          text=True, timeout=120)


def test_the_rules_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


# (contract name, module, the import that breaks it)
BREAKS = [
    ("Layers:", "jobs/runner.py", "import api.service"),
    ("Media stages, models and dataset formats know no Flask", "processors/sampling.py",
     "import mongo_manager"),
    ("Media stages and dataset formats take settings as arguments", "datasets/spec.py",
     "import config"),
    ("Only processors/ and annotation/ read or write media", "jobs/annotate.py", "import av"),
    ("Only mongo_manager imports pymongo", "jobs/runner.py", "import bson"),
    ("Only api/ imports Flask", "intake/status.py", "import flask"),
    ("Only engines/ imports Celery", "jobs/runner.py", "import celery"),
    ("Sending a job to Celery never imports the worker side", "engines/celery_send.py",
     "import engines.celery_worker"),
    ("Only storage/ imports boto3", "jobs/dataset.py", "import boto3"),
    ("No import cycles inside a package", "jobs/context.py", "import jobs.runner"),
    ("Only mongo_manager imports the stores", "jobs/runner.py", "import stores.jobs"),
    ("The stores import no package of the service", "stores/runs.py", "import jobs.runner"),
    ("No import cycles inside a package", "stores/uploads.py", "import stores.jobs"),
    ("Layers:", "events/deliverer.py", "import jobs.runner"),
    ("The stores import no package of the service", "stores/outbox.py", "import events.deliverer"),
    ("Only mongo_manager imports pymongo", "events/deliverer.py", "import pymongo"),
]


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The repo's code and rules, to break one rule at a time."""
    folder = tmp_path_factory.mktemp("repo")
    for package in (*PACKAGES, "stores"):
        shutil.copytree(ROOT / package, folder / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for path in [*ROOT.glob("*.py"), ROOT / ".importlinter"]:
        shutil.copy2(path, folder / path.name)
    return folder


@pytest.mark.parametrize("contract, module, line", BREAKS, ids=[b[0] for b in BREAKS])
def test_each_rule_fails_when_broken(copy, contract, module, line):
    path = copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # breaks the rule\n")
    try:
        result = lint_imports(copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [text for text in result.stdout.replace("\n", " ").split("BROKEN")[:-1]]
    assert any(contract in text.rsplit("KEPT", 1)[-1] for text in broken), result.stdout


def imports_of(path: Path) -> set[str]:
    """The top-level names a module imports (``import a.b`` and ``from a.b import c``: a)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted(ROOT.glob("*.py")), ids=lambda p: p.name)
def test_top_level_files_keep_the_rules(path):
    imported = imports_of(path)
    if path.stem != "mongo_manager":
        assert not imported & {"pymongo", "bson"}, "only mongo_manager talks to MongoDB"
        assert "stores" not in imported, "only mongo_manager imports the stores"
    assert not imported & {"flask", "celery", "kombu", "boto3", "botocore"}, \
        "Flask is api/'s, Celery engines/', boto3 storage/'s"
    if path.stem in BASICS:  # the bottom: what every package may use, using none of them
        assert not imported & set(PACKAGES), f"{path.name} imports a package above it"


def test_the_top_level_is_entry_points_and_basics():
    entry_points = {"app", "wsgi", "cli", "executor", "celery_app", "dataset_processor",
                    "dataset_creation_warm_start", "quickstart", "gunicorn.conf"}
    assert {p.stem for p in ROOT.glob("*.py")} == entry_points | set(BASICS)
