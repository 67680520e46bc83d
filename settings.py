"""The settings: every key of ``config.cfg`` with its default, and the typed,
checked values ``config.load_config`` reads them into (one dataclass per section).

Apart from ``config`` so that the shape of the settings reads on its own; import
them from ``config``, which reads, overrides and checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Every known key with its default, as the strings an INI file holds: the one
# place a default is written (the dataclasses below hold the checked values).
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
                   "max_frame_pixels": str(4096 * 4096), "max_image_mb": "256",
                   "max_zip_mb": "16384", "max_zip_ratio": "200", "min_free_mb": "1024",
                   "detect_shots": "true", "task_split": "fixed", "skip_still": "false",
                   "min_shot_frames": "5"},
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

# How a video is split into tasks (processors/task_split.py, request field task_split).
TASK_SPLITS = ("fixed", "shots")
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
    max_body_bytes: int
    # Each check of GET /api/health answers within this (a load balancer's
    # probe gives up after 1-5 s); one that did not is reported as down.
    health_timeout_seconds: float
    # How long a signed review link (``reviewUrl`` of the status) opens the
    # upload's review page (api/review.py).
    review_link_seconds: float


@dataclass(frozen=True)
class MongoConfig:
    uri: str
    database: str
    timeout_ms: int  # server selection: how long an operation waits for a server
    connect_timeout_ms: int  # also how long a heartbeat waits: a frozen server
    socket_timeout_ms: int  # one reply; 0 = none (the heartbeat notices a dead server)
    # All the database work of one API request: past it, 503 (a frozen database
    # must not hold requests, and the callers queued behind them).
    request_timeout_ms: int
    # A job process's operation waits this long for a server that is away
    # (its interrupted write is then retried): a job outlives a shorter outage.
    job_wait_seconds: float


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
    segment_seconds: float
    # A job with no progress for this long fails ("stalled") and its process is
    # freed (jobs/watchdog.py); longer than any one step: a model batch, an S3 part.
    stall_seconds: float
    # Hostile media (processors/input_guard.py): a video frame or an image
    # (width x height), one image file or zip member (uncompressed), all image
    # members of a zip, and the most a zip member over 1 MiB may expand.
    max_frame_pixels: int
    max_image_mb: int
    max_zip_mb: int
    max_zip_ratio: float
    # Free space (MiB) the contents store keeps: below it new work is refused
    # (507), health reports storage down (storage/space.py); 0 = no floor.
    min_free_mb: int
    # Find a video's shot boundaries while cutting (processors/shots.py): tracks
    # end at them, the upload lists its shots. Off only to measure its cost.
    detect_shots: bool = True
    # What a request that does not say gets (processors/task_split.py):
    # "fixed" tasks or tasks that follow "shots"; leave still frames out.
    task_split: str = "fixed"
    skip_still: bool = False
    # task_split "shots": a cut ends a task only if it holds this many samples
    # (shorter shots are gathered with what follows, tracks still end there).
    min_shot_frames: int = 5


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
    upload_threads: int  # objects in flight at once
    max_attempts: int  # per request, with backoff (throttling, connection errors)
    part_mb: int  # multipart part size; files larger than one part go multipart
    connect_timeout_seconds: float
    read_timeout_seconds: float  # per response; a request is retried after it


@dataclass(frozen=True)
class QueueConfig:
    """The Celery engine's settings (used only when ``broker_url`` is set)."""

    cpu_queue: str  # cutting and dataset builds
    gpu_queue: str  # auto-annotation (request_type 1 and 2)
    visibility_timeout: float  # seconds; longer than the longest job
    resubmit_seconds: float  # first re-send of a job still waiting (doubles each time)
    sweep_seconds: float  # how often a worker's sweeper looks for such jobs
    broker_timeout_seconds: float  # connecting to Redis, and each reply


@dataclass(frozen=True)
class EventsConfig:
    """Where state-change events are POSTed (Standard Webhooks); empty url = none."""

    url: str
    secret: str  # "whsec_" + base64, as every Standard Webhooks library reads it
    max_attempts: int  # then the event is "dead" (listed, and sent again on request)
    timeout_seconds: float  # per POST; a slower receiver counts as failed
    # Waits between attempts double from backoff_seconds up to max_backoff_seconds,
    # each drawn at random from its upper half (jitter: receivers that come back
    # are not hit by every sender at once).
    backoff_seconds: float
    max_backoff_seconds: float

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
    events: EventsConfig
