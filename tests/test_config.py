"""Configuration: defaults, environment overrides, and errors that name the key."""
from __future__ import annotations

from pathlib import Path

import pytest

from config import ROOT, load_config
from dev_key import serving_config
from exceptions import ConfigError

BASE = {"SERVER_AUTH_KEY": "k"}


def test_defaults_from_repo_config():
    config = load_config(env=BASE)
    assert config.server.port == 8081
    assert config.mongodb.uri == "embedded" and config.mongodb.database == "AIData"
    assert config.contents_dir == Path("contents")
    assert config.processing.frames_per_task == 120 and config.processing.keep_frames is True
    assert config.processing.workers >= 1 and config.processing.min_free_mb == 1024
    assert config.s3.bucket == "" and config.broker_url == ""


def test_environment_overrides_every_section():
    config = load_config(env={**BASE, "SERVER_PORT": "9000", "MONGODB_DATABASE": "Other",
                              "PATHS_CONTENTS_DIR": "/data/c", "PROCESSING_FRAMES_PER_TASK": "60",
                              "PROCESSING_KEEP_FRAMES": "no", "S3_BUCKET": "b",
                              "PROCESSING_WORKERS": "3", "PROCESSING_MIN_FREE_MB": "0"})
    assert config.server.port == 9000 and config.mongodb.database == "Other"
    assert config.contents_dir == Path("/data/c")
    assert config.processing.frames_per_task == 60 and config.processing.keep_frames is False
    assert config.processing.workers == 3 and config.s3.bucket == "b"
    assert config.processing.min_free_mb == 0  # no floor


def test_config_file_variable(tmp_path):
    path = tmp_path / "other.cfg"
    path.write_text("[server]\nauth_key = fromfile\nport = 7000\n[processing]\ncrf = 30\n")
    config = load_config(env={"CONFIG_FILE": str(path)})
    assert config.server.auth_key == "fromfile" and config.server.port == 7000
    assert config.processing.crf == 30 and config.processing.frames_per_task == 120


@pytest.mark.parametrize("name,value,key", [
    ("SERVER_PORT", "0", "server.port"),
    ("SERVER_PORT", "http", "server.port"),
    ("SERVER_DEV_MODE", "maybe", "server.dev_mode"),
    ("MONGODB_URI", "postgres://x", "mongodb.uri"),
    ("MONGODB_DATABASE", "", "mongodb.database"),
    ("PATHS_CONTENTS_DIR", "", "paths.contents_dir"),
    ("PROCESSING_FRAMES_PER_TASK", "0", "processing.frames_per_task"),
    ("PROCESSING_FRAMES_PER_TASK", "ten", "processing.frames_per_task"),
    ("PROCESSING_WORKERS", "-2", "processing.workers"),
    ("PROCESSING_KEEP_FRAMES", "2", "processing.keep_frames"),
    ("PROCESSING_PRESET", "turbo", "processing.preset"),
    ("PROCESSING_TASK_SPLIT", "scenes", "processing.task_split"),
    ("PROCESSING_MIN_SHOT_FRAMES", "0", "processing.min_shot_frames"),
    ("PROCESSING_SKIP_STILL", "maybe", "processing.skip_still"),
    ("PROCESSING_CRF", "52", "processing.crf"),
    ("PROCESSING_JPEG_QUALITY", "0", "processing.jpeg_quality"),
    ("PROCESSING_MIN_FREE_MB", "-1", "processing.min_free_mb"),
    ("PROCESSING_MIN_FREE_MB", "1G", "processing.min_free_mb"),
    ("QUEUE_BROKER_URL", "amqp://x", "queue.broker_url"),
])
def test_bad_values_name_the_key(name, value, key):
    with pytest.raises(ConfigError) as error:
        load_config(env={**BASE, name: value})
    assert key in str(error.value)


@pytest.mark.parametrize("text,needle", [
    ("[server]\nauth_kee = x\n", "server.auth_kee"),
    ("[nonsense]\na = 1\n", "[nonsense]"),
    ("not an ini file", "other.cfg"),
])
def test_bad_files(tmp_path, text, needle):
    path = tmp_path / "other.cfg"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(env={**BASE, "CONFIG_FILE": str(path)})
    assert needle in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(env={"CONFIG_FILE": str(tmp_path / "none.cfg")})


def test_refuses_to_start_without_key():
    with pytest.raises(ConfigError, match="server.auth_key"):
        load_config(env={})


def test_entry_points_without_http_need_no_key_but_the_app_refuses_it(tmp_path):
    config = load_config(env={"PATHS_CONTENTS_DIR": str(tmp_path)}, require_auth_key=False)
    assert config.server.auth_key == ""
    from app import create_app
    with pytest.raises(ConfigError, match="server.auth_key"):
        create_app(config)  # the web app never serves without a key, however loaded
    assert not (tmp_path / ".dev_auth_key").exists()


def test_loading_config_writes_nothing(tmp_path):
    """dev_mode's key is made by the web entry points (dev_key.py), not while loading."""
    env = {"SERVER_DEV_MODE": "true", "PATHS_CONTENTS_DIR": str(tmp_path / "contents")}
    assert load_config(env=env, require_auth_key=False).server.auth_key == ""
    with pytest.raises(ConfigError, match="server.dev_mode: no key in"):
        load_config(env=env)  # none made yet: the web app would not serve
    assert list(tmp_path.iterdir()) == []


def test_dev_mode_generates_one_key_for_every_process(tmp_path, capsys):
    env = {"SERVER_DEV_MODE": "true", "PATHS_CONTENTS_DIR": str(tmp_path)}
    first, second = (serving_config(load_config(env=env, require_auth_key=False))
                     for _ in range(2))
    key = first.server.auth_key
    assert len(key) >= 32
    assert key == second.server.auth_key == load_config(env=env).server.auth_key
    # printed once, with where it is kept
    assert capsys.readouterr().out == \
        f"dev_mode: generated auth key {key} (in {tmp_path / '.dev_auth_key'})\n"
    assert (tmp_path / ".dev_auth_key").stat().st_mode & 0o777 == 0o600  # a secret
    assert [p.name for p in tmp_path.iterdir()] == [".dev_auth_key"]


def test_annotation_versions_are_open_keys(tmp_path):
    path = tmp_path / "other.cfg"
    path.write_text("[server]\nauth_key = k\n[annotation]\nversion_1 = models/v1\n")
    config = load_config(env={"CONFIG_FILE": str(path), "ANNOTATION_VERSION_2": "models/v2"})
    assert config.annotation.versions == {1: ROOT / "models/v1", 2: ROOT / "models/v2"}


@pytest.mark.parametrize("key", ["version_0", "version_x", "version_²", "version_", "version_-1",
                                 "version_" + "9" * 5000])
def test_an_annotation_version_that_is_no_number_stops_start_up(tmp_path, key):
    path = tmp_path / "other.cfg"
    path.write_text(f"[server]\nauth_key = k\n[annotation]\n{key} = models/v1\n",
                    encoding="utf-8")
    with pytest.raises(ConfigError, match="the version must be a number >= 1"):
        load_config(env={"CONFIG_FILE": str(path)})


def test_a_misspelled_environment_name_is_logged_with_the_setting_meant(caplog):
    """An environment name in a section's prefix that is no setting but close to
    one is ignored, as the environment holds other programs' names too, but
    never silently; other programs' names (gunicorn's SERVER_SOFTWARE) are not
    logged."""
    caplog.set_level("WARNING", logger="config")
    config = load_config(env={**BASE, "EVENTS_MAX_ATEMPTS": "3", "PROCESSING_STALL_SECONDS": "60",
                              "ANNOTATION_VERSION_4": "/models/v4", "S3_FOO": "x",
                              "SERVER_SOFTWARE": "gunicorn/23.0.0", "SERVER_PROTOCOL": "HTTP/1.1",
                              "HOME": "/root", "PROCESSINGWORKERS": "2", "MONGODB_URL": "x"})
    assert config.events.max_attempts == 8 and config.processing.stall_seconds == 60
    assert [r.getMessage() for r in caplog.records] == [
        "environment variable EVENTS_MAX_ATEMPTS is not a setting, ignored "
        "(did you mean EVENTS_MAX_ATTEMPTS?)",
        "environment variable MONGODB_URL is not a setting, ignored (did you mean MONGODB_URI?)"]
