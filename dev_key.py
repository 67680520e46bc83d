"""dev_mode's auth key: generated (once) and printed by the web entry points,
``python app.py`` and gunicorn (``gunicorn.conf.py``, ``wsgi.py``), before
they serve, so that loading the configuration only ever reads (config.py)."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from config import Config, dev_key_file, with_auth_key


def serving_config(config: Config) -> Config:
    """``config`` with the key a web server serves with: ``server.auth_key``,
    or in dev_mode the generated one, made here the first time. Raises
    ConfigError where there is none (no key and no dev_mode)."""
    make_dev_key(config)
    return with_auth_key(config)


def make_dev_key(config: Config) -> None:
    """In dev_mode without a configured key: write one to ``dev_key_file`` (and
    print it, and where it is) unless a process of the service did before."""
    if config.server.auth_key or not config.server.dev_mode:
        return
    key_file = dev_key_file(config)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        _create_private(key_file, secrets.token_urlsafe(32))


def _create_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner only, whole or not at all, unless it
    exists: of processes starting at once, one key wins and all read it."""
    draft = path.with_name(f"{path.name}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
    try:
        os.link(draft, path)
        print(f"dev_mode: generated auth key {text} (in {path})")
    except FileExistsError:
        pass
    finally:
        draft.unlink()
