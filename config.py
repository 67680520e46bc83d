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
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from exceptions import ConfigError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG_FILE = ROOT / "config.cfg"

# Every known key with its default, as the strings an INI file holds.
DEFAULTS: dict[str, dict[str, str]] = {
    "server": {"auth_key": "", "host": "0.0.0.0", "port": "8081", "dev_mode": "false",
               "max_body_bytes": "1048576", "health_timeout_seconds": "1.5",
               "review_link_seconds": "86400"},
    "mongodb": {"uri": "embedded", "database": "AIData", "timeout_ms": "5000",
                "connect_timeout_ms": "", "socket_timeout_ms": "0",
                "request_timeout_ms": "3000", "job_wait_seconds": "120"},
    "paths": {"contents_dir": "./contents"},
    "processing": {"frames_per_task": "120", "workers": "", "keep_frames": "true",
                   "preset": "veryfast", "crf": "23", "jpeg_quality": "90",
                   "lease_seconds": "30", "max_attempts": "3", "poll_seconds": "0.5",
                   "segment_seconds": "300", "stall_seconds": "300",
                   "max_frame_pixels": "16777216", "max_image_mb": "256",
                   "max_zip_mb": "16384", "max_zip_ratio": "200", "min_free_mb": "1024"},
    "annotation": {"device": "auto", "threads": "1", "batch_size": "8"},
    "s3": {"endpoint_url": "", "bucket": "", "region": "", "upload_threads": "16",
           "max_attempts": "8", "part_mb": "8", "connect_timeout_seconds": "5",
           "read_timeout_seconds": "60"},
    "queue": {"broker_url": "", "cpu_queue": "cut", "gpu_queue": "annotate",
              "visibility_timeout": "43200", "resubmit_seconds": "60", "sweep_seconds": "5",
              "broker_timeout_seconds": "5"},
    "events": {"url": "", "secret": "", "max_attempts": "8", "timeout_seconds": "5",
               "backoff_seconds": "1", "max_backoff_seconds": "300"},
}

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")


@dataclass(frozen=True)
class ServerConfig:
    auth_key: str
    host: str
    port: int
    dev_mode: bool
    # Larger request bodies are refused with 413 before they are read into a web
    # worker's memory; a processContent request is well under 1 KiB.
    max_body_bytes: int = 1 << 20
    # Each check of GET /api/health answers within this (a load balancer's
    # probe gives up after 1-5 s); one that did not is reported as down.
    health_timeout_seconds: float = 1.5
    # How long a signed review link (``reviewUrl`` of the status) opens the
    # review page; the default is read from DEFAULTS, not written twice.
    review_link_seconds: float = float(DEFAULTS["server"]["review_link_seconds"])


@dataclass(frozen=True)
class MongoConfig:
    uri: str
    database: str
    timeout_ms: int  # server selection: how long an operation waits for a server
    connect_timeout_ms: int = 5000  # also how long a heartbeat waits: a frozen server
    socket_timeout_ms: int = 0  # one reply; 0 = none (the heartbeat notices a dead server)
    # All the database work of one API request: past it, 503 (a frozen database
    # must not hold requests, and the callers queued behind them).
    request_timeout_ms: int = 3000
    # A job process's operation waits this long for a server that is away
    # (its interrupted write is then retried): a job outlives a shorter outage.
    job_wait_seconds: float = 120.0


@dataclass(frozen=True)
class ProcessingConfig:
    frames_per_task: int
    workers: int
    keep_frames: bool
    preset: str
    crf: int
    jpeg_quality: int
    lease_seconds: float
    max_attempts: int
    poll_seconds: float
    # A video at least twice this long is cut in segments of about this many
    # seconds by several workers at once (0 = always one pass).
    segment_seconds: float = 300.0
    # A job with no progress for this long fails ("stalled") and its process is
    # freed (jobs/watchdog.py); longer than any one step: a model batch, an S3 part.
    stall_seconds: float = 300.0
    # Hostile media (processors/input_guard.py): a video frame or an image
    # (width x height, default 4096x4096), one image file or zip member
    # (uncompressed), all image members of a zip, and the most a zip member
    # over 1 MiB may expand.
    max_frame_pixels: int = 4096 * 4096
    max_image_mb: int = 256
    max_zip_mb: int = 16384
    max_zip_ratio: float = 200.0
    # Free space (MiB) the contents store keeps: below it new work is refused
    # (507), health reports storage down (storage/space.py); 0 = no floor.
    min_free_mb: int = 1024


@dataclass(frozen=True)
class AnnotationConfig:
    device: str  # "cpu", "cuda", "cuda:N", or "auto" (CUDA when present)
    threads: int  # torch / onnxruntime CPU threads per job process
    batch_size: int  # frames per inference call
    versions: dict[int, Path]  # version number -> model folder (relative: to the repo)


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str  # empty = AWS
    bucket: str  # empty = datasets are written locally only
    region: str
    upload_threads: int = 16  # objects in flight at once
    max_attempts: int = 8  # per request, with backoff (throttling, connection errors)
    part_mb: int = 8  # multipart part size; files larger than one part go multipart
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 60.0  # per response; a request is retried after it


@dataclass(frozen=True)
class QueueConfig:
    """The Celery engine's settings (used only when ``broker_url`` is set)."""

    cpu_queue: str  # cutting and dataset builds
    gpu_queue: str  # auto-annotation (request_type 1 and 2)
    visibility_timeout: float  # seconds; longer than the longest job
    resubmit_seconds: float  # first re-send of a job still waiting (doubles each time)
    sweep_seconds: float  # how often a worker's sweeper looks for such jobs
    broker_timeout_seconds: float = 5.0  # connecting to Redis, and each reply


@dataclass(frozen=True)
class EventsConfig:
    """Where state-change events are POSTed (Standard Webhooks); empty url = none."""

    url: str = ""
    secret: str = ""  # "whsec_" + base64, as every Standard Webhooks library reads it
    max_attempts: int = 8  # then the event is "dead" (listed, and sent again on request)
    timeout_seconds: float = 5.0  # per POST; a slower receiver counts as failed
    # Waits between attempts double from backoff_seconds up to max_backoff_seconds,
    # each drawn at random from its upper half (jitter: receivers that come back
    # are not hit by every sender at once).
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class Config:
    server: ServerConfig
    mongodb: MongoConfig
    contents_dir: Path
    processing: ProcessingConfig
    s3: S3Config
    broker_url: str
    annotation: AnnotationConfig
    queue: QueueConfig
    source: str  # the file it was read from, for messages
    events: EventsConfig = EventsConfig()


def load_config(path: str | os.PathLike | None = None,
                env: Mapping[str, str] | None = None, *,
                require_auth_key: bool = True) -> Config:
    """Read, override and validate the configuration.

    ``require_auth_key=False`` for entry points that serve no HTTP (the dataset
    CLI, the warm start, the executor, Celery workers, ``app.py process``):
    they never read the key, so they must not need the web server's secret.
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
    workers_text = get.text("processing", "workers")
    workers = os.cpu_count() or 1
    if workers_text:
        workers = get.integer("processing", "workers", 1, 256)
    return ProcessingConfig(
        frames_per_task=get.integer("processing", "frames_per_task", 1, 100000),
        workers=workers, keep_frames=get.boolean("processing", "keep_frames"), preset=preset,
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
    """Refuse to serve without a key, unless dev_mode makes (and keeps) one.
    The web app calls it on whatever config it is given."""
    if config.server.auth_key:
        return config
    if not config.server.dev_mode:
        raise ConfigError("server.auth_key is not set (set SERVER_AUTH_KEY, or "
                          "server.dev_mode = true to generate one)")
    # Kept in a file so that every process of the service uses the same key.
    key_file = config.contents_dir / ".dev_auth_key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        _create_private(key_file, secrets.token_urlsafe(32))
    server = ServerConfig(**{**config.server.__dict__, "auth_key": key_file.read_text().strip()})
    return Config(**{**config.__dict__, "server": server})


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
