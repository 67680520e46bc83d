"""Configuration: ``config.cfg`` + ``<SECTION>_<KEY>`` environment overrides.

Read once at start-up and validated; a bad value raises ``ConfigError``
naming the key. ``CONFIG_FILE`` points at another file.
"""
from __future__ import annotations

import base64
import binascii
import configparser
import difflib
import logging
import os
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from exceptions import ConfigError
from settings import (DEFAULTS, TASK_SPLITS, X264_PRESETS, AnnotationConfig, Config,
                      EventsConfig, MongoConfig, ProcessingConfig, QueueConfig, S3Config,
                      ServerConfig)

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = ROOT / "config.cfg"


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None, *,
                require_auth_key: bool = True) -> Config:
    """Read, override and validate the configuration.

    ``require_auth_key=False`` for entry points that serve no HTTP (the dataset
    CLI, the warm start, the executor, Celery workers, ``app.py process``):
    they never read the key, so they must not need the web server's secret.
    Only reads: a dev_mode key is read once the web entry points made it
    (dev_key.py), and loading never writes one.
    """
    env = os.environ if env is None else env
    path = Path(path or env.get("CONFIG_FILE") or DEFAULT_CONFIG_FILE)
    raw = _read_raw(path, env)
    config = _validate(raw, path)
    return with_auth_key(config) if require_auth_key else config


def _read_raw(path: Path, env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    raw = {section: dict(values) for section, values in DEFAULTS.items()}
    for section in parser.sections():
        if section not in DEFAULTS:
            raise ConfigError(f"{path}: unknown section [{section}]")
        for key, value in parser.items(section):
            if key not in DEFAULTS[section] and not _is_open_key(section, key):
                raise ConfigError(f"{path}: unknown key {section}.{key}")
            raw[section][key] = value
    for section, keys in raw.items():
        for key in list(keys) + list(DEFAULTS[section]):
            name = f"{section}_{key}".upper()
            if name in env:
                keys[key] = env[name]
    for name, value in env.items():  # version_<n> keys exist only where set
        section, _, key = name.lower().partition("_")
        if section == "annotation" and _is_open_key(section, key):
            raw[section][key] = value
    _warn_unknown_names(env)
    return raw


def _warn_unknown_names(env: Mapping[str, str]) -> None:
    """A setting's name misspelled in the environment would be ignored without a
    word: a name in one of the sections' prefixes that is no setting but close
    to one is logged. Other names are other programs' (gunicorn sets
    ``SERVER_SOFTWARE`` in its workers), so they are neither refused nor logged."""
    known = [f"{section}_{key}".upper() for section, keys in DEFAULTS.items() for key in keys]
    for name in sorted(env):
        section, _, key = name.lower().partition("_")
        if section in DEFAULTS and name.upper() not in known \
                and not _is_open_key(section, key):
            for close in difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.8):
                log.warning("environment variable %s is not a setting, ignored "
                            "(did you mean %s?)", name, close)


def _is_open_key(section: str, key: str) -> bool:
    return section == "annotation" and key.startswith("version_")


def _validate(raw: dict[str, dict[str, str]], path: Path) -> Config:
    get = _Getter(raw)
    server = ServerConfig(auth_key=get.text("server", "auth_key"), host=get.text("server", "host"),
                          port=get.integer("server", "port", 1, 65535),
                          dev_mode=get.boolean("server", "dev_mode"),
                          max_body_bytes=get.integer("server", "max_body_bytes", 1024, 1 << 30),
                          health_timeout_seconds=get.number("server", "health_timeout_seconds",
                                                            0.1, 60),
                          review_link_seconds=get.number("server", "review_link_seconds",
                                                         1, 366 * 86400))
    uri = get.text("mongodb", "uri")
    if uri != "embedded" and not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("mongodb.uri must be 'embedded' or a mongodb:// URI")
    mongodb = _mongodb(get, uri)
    # Kept as configured: paths stored in documents read "contents/tasks/..."
    # for the default, relative to the service's working directory.
    contents_dir = Path(get.text("paths", "contents_dir", required=True))
    processing = _processing(get)
    broker = get.text("queue", "broker_url")
    if broker and not broker.startswith(("redis://", "rediss://")):
        raise ConfigError("queue.broker_url must be empty or a redis:// URL")
    s3 = S3Config(*(get.text("s3", key) for key in ("endpoint_url", "bucket", "region")),
                  upload_threads=get.integer("s3", "upload_threads", 1, 256),
                  max_attempts=get.integer("s3", "max_attempts", 1, 50),
                  part_mb=get.integer("s3", "part_mb", 5, 5120),
                  connect_timeout_seconds=get.number("s3", "connect_timeout_seconds", 0.1, 600),
                  read_timeout_seconds=get.number("s3", "read_timeout_seconds", 0.1, 3600))
    config = Config(server=server, mongodb=mongodb, contents_dir=contents_dir,
                    processing=processing, s3=s3, broker_url=broker,
                    annotation=_annotation(get, raw["annotation"]), queue=_queue(get),
                    source=str(path), events=_events(get))
    return config


def _mongodb(get: "_Getter", uri: str) -> MongoConfig:
    timeout_ms = get.integer("mongodb", "timeout_ms", 100, 600000)
    # Empty: timeout_ms, which was both before these keys existed.
    connect_ms = get.text("mongodb", "connect_timeout_ms") and \
        get.integer("mongodb", "connect_timeout_ms", 100, 600000)
    return MongoConfig(uri=uri, database=get.text("mongodb", "database", required=True),
                       timeout_ms=timeout_ms, connect_timeout_ms=connect_ms or timeout_ms,
                       socket_timeout_ms=get.integer("mongodb", "socket_timeout_ms", 0, 86400000),
                       request_timeout_ms=get.integer("mongodb", "request_timeout_ms",
                                                      100, 600000),
                       job_wait_seconds=get.number("mongodb", "job_wait_seconds", 1, 86400))


def _processing(get: "_Getter") -> ProcessingConfig:
    preset = get.text("processing", "preset")
    if preset not in X264_PRESETS:
        raise ConfigError(f"processing.preset must be one of {', '.join(X264_PRESETS)}")
    task_split = get.text("processing", "task_split")
    if task_split not in TASK_SPLITS:
        raise ConfigError(f"processing.task_split must be one of {', '.join(TASK_SPLITS)}")
    workers_text = get.text("processing", "workers")
    workers = os.cpu_count() or 1
    if workers_text:
        workers = get.integer("processing", "workers", 1, 256)
    return ProcessingConfig(
        frames_per_task=get.integer("processing", "frames_per_task", 1, 100000),
        workers=workers, keep_frames=get.boolean("processing", "keep_frames"), preset=preset,
        detect_shots=get.boolean("processing", "detect_shots"), task_split=task_split,
        skip_still=get.boolean("processing", "skip_still"),
        min_shot_frames=get.integer("processing", "min_shot_frames", 1, 100000),
        crf=get.integer("processing", "crf", 0, 51),
        jpeg_quality=get.integer("processing", "jpeg_quality", 1, 100),
        lease_seconds=get.number("processing", "lease_seconds", 2, 3600),
        max_attempts=get.integer("processing", "max_attempts", 1, 100),
        poll_seconds=get.number("processing", "poll_seconds", 0.05, 60),
        segment_seconds=get.number("processing", "segment_seconds", 0, 10**6),
        stall_seconds=get.number("processing", "stall_seconds", 1, 7 * 86400),
        max_frame_pixels=get.integer("processing", "max_frame_pixels", 64 * 64, 2**31 - 1),
        max_image_mb=get.integer("processing", "max_image_mb", 1, 1 << 20),
        max_zip_mb=get.integer("processing", "max_zip_mb", 1, 1 << 30),
        max_zip_ratio=get.number("processing", "max_zip_ratio", 2, 10**6),
        min_free_mb=get.integer("processing", "min_free_mb", 0, 1 << 30))


def _queue(get: "_Getter") -> QueueConfig:
    return QueueConfig(cpu_queue=get.text("queue", "cpu_queue", required=True),
                       gpu_queue=get.text("queue", "gpu_queue", required=True),
                       visibility_timeout=get.number("queue", "visibility_timeout", 60, 7 * 86400),
                       resubmit_seconds=get.number("queue", "resubmit_seconds", 1, 86400),
                       sweep_seconds=get.number("queue", "sweep_seconds", 0.2, 3600),
                       broker_timeout_seconds=get.number("queue", "broker_timeout_seconds",
                                                         0.1, 600))


def _events(get: "_Getter") -> EventsConfig:
    url, secret = get.text("events", "url"), get.text("events", "secret")
    if url and (why := _bad_event_url(url)):
        raise ConfigError(f"events.url must be empty or an http:// or https:// URL: {why}")
    if url and not _webhook_secret(secret):
        raise ConfigError("events.secret must be a Standard Webhooks secret: whsec_ and the "
                          "base64 of 24 to 64 random bytes (set EVENTS_SECRET)")
    settings = EventsConfig(url=url, secret=secret,
                            max_attempts=get.integer("events", "max_attempts", 1, 1000),
                            timeout_seconds=get.number("events", "timeout_seconds", 0.1, 600),
                            backoff_seconds=get.number("events", "backoff_seconds", 0.01, 3600),
                            max_backoff_seconds=get.number("events", "max_backoff_seconds",
                                                           0.01, 86400))
    if settings.max_backoff_seconds < settings.backoff_seconds:
        raise ConfigError("events.max_backoff_seconds must be at least events.backoff_seconds")
    return settings


def _bad_event_url(url: str) -> str | None:
    """Why the deliverer could not POST to ``url`` (None: it can). Checked here so
    that a typo stops start-up instead of failing every event later."""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "no spaces or control characters"
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "a scheme and a host"
    if parsed.username is not None or parsed.password is not None:
        return "no user:password (the deliverer does not send them; sign-in is the signature)"
    try:
        parsed.port  # noqa: B018 -- raises on a port that is no number or out of range
    except ValueError as exc:
        return str(exc).lower()
    return None


def _webhook_secret(secret: str) -> bool:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return secret.startswith("whsec_") and 24 <= len(key) <= 64


def _annotation(get: "_Getter", raw: dict[str, str]) -> AnnotationConfig:
    device = get.text("annotation", "device")
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError("annotation.device must be auto, cpu, cuda or cuda:<n>")
    versions = {}
    for key, value in raw.items():
        if not _is_open_key("annotation", key):
            continue
        number = key.removeprefix("version_")
        # isascii + isdigit: '²' is a digit that int() refuses; 5,000 digits too.
        if not (number.isascii() and number.isdigit() and len(number) < 10) or int(number) < 1:
            raise ConfigError(f"annotation.{key}: the version must be a number >= 1")
        if not value.strip():
            raise ConfigError(f"annotation.{key} must name a model folder")
        folder = Path(value.strip())
        versions[int(number)] = folder if folder.is_absolute() else ROOT / folder
    return AnnotationConfig(device=device, threads=get.integer("annotation", "threads", 1, 256),
                            batch_size=get.integer("annotation", "batch_size", 1, 1024),
                            versions=versions)


def with_auth_key(config: Config) -> Config:
    """The config with the key to serve with: ``server.auth_key``, or in dev_mode
    the one the web entry points generated (dev_key.py). Only reads: refuses to
    serve without a key; the web app calls it on whatever config it is given."""
    if config.server.auth_key:
        return config
    if not config.server.dev_mode:
        raise ConfigError("server.auth_key is not set (set SERVER_AUTH_KEY, or "
                          "server.dev_mode = true to generate one)")
    key_file = dev_key_file(config)
    try:
        key = key_file.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(f"server.dev_mode: no key in {key_file} yet (the web servers, "
                          "python app.py and gunicorn, generate it)") from None
    server = ServerConfig(**{**config.server.__dict__, "auth_key": key})
    return Config(**{**config.__dict__, "server": server})


def dev_key_file(config: Config) -> Path:
    """Where dev_mode keeps its generated key: in a file, so that every process
    of the service uses the same one."""
    return config.contents_dir / ".dev_auth_key"


class _Getter:
    """Typed reads of the raw strings, each failure naming its key."""

    def __init__(self, raw: dict[str, dict[str, str]]) -> None:
        self.raw = raw

    def text(self, section: str, key: str, required: bool = False) -> str:
        value = self.raw[section].get(key, "").strip()
        if required and not value:
            raise ConfigError(f"{section}.{key} must not be empty")
        return value

    def _parse(self, section: str, key: str, cast: Callable, kind: str):
        value = self.text(section, key)
        try:
            return cast(value)
        except ValueError:
            raise ConfigError(f"{section}.{key} must be {kind}, got {value!r}") from None

    def integer(self, section: str, key: str, low: int, high: int) -> int:
        value = self._parse(section, key, int, "an integer")
        if not low <= value <= high:
            raise ConfigError(f"{section}.{key} must be between {low} and {high}, got {value}")
        return value

    def number(self, section: str, key: str, low: float, high: float) -> float:
        value = self._parse(section, key, float, "a number")
        if not low <= value <= high:
            raise ConfigError(f"{section}.{key} must be between {low} and {high}, got {value}")
        return value

    def boolean(self, section: str, key: str) -> bool:
        value = self.text(section, key).lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{section}.{key} must be true or false, got {value!r}")
