"""Each entry point asks only for what it uses: the commands that make no HTTP
call run without SERVER_AUTH_KEY, exactly as the README writes them; the web
servers still refuse to start without it."""
from __future__ import annotations

import os
import signal
import subprocess

import readme  # noqa: E402
from conftest import ROOT, wait_for
from dataset_data import make_tasks, make_version
from media import cfr_video
from readme import person_env, split

from intake.dataset_builds import start_build

NO_KEY = "server.auth_key is not set"


def readme_command(start: str) -> list[str]:
    """The README's command line that begins with ``start``, as argv, without a
    leading ``SERVER_AUTH_KEY=...``."""
    return split(readme.readme_command(start))[1]


def keyless_env(env: dict, **extra: str) -> dict:
    """A person's shell with no server key."""
    return {k: v for k, v in person_env({**env, **extra}).items()
            if not k.startswith("SERVER_")}


def run(argv: list[str], run_env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    process = subprocess.Popen(argv, env=run_env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # a server that started after all
        out, err = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def test_dataset_commands_as_documented_need_no_server_key(env, mongo, contents, s3_env,
                                                           s3_server):
    make_tasks(mongo, contents, "u1", 3)
    version = make_version(mongo, s3Prefix="doc")
    run_env = keyless_env(env, **s3_env)
    command = readme_command("python dataset_processor.py")
    assert command == ["python", "dataset_processor.py", "-v", "<dataset-version-id>"]
    done = run([version if arg == "<dataset-version-id>" else arg for arg in command], run_env)
    assert done.returncode == 0, done.stderr
    # 30 frames' images and labels; data.yaml, 3 COCO files; the report; the manifest
    assert "uploaded 66 objects" in done.stdout
    assert mongo.datasets.get_version(version)["status"] == 1
    assert len(s3_server.objects(s3_env["S3_BUCKET"], "doc/")) == 66
    mongo.jobs.queue_job(*start_build(mongo, version))  # something for the warm start to do
    done = run(readme_command("python dataset_creation_warm_start.py"), run_env)
    assert done.returncode == 0 and "finished 1 job(s)" in done.stdout, done.stderr


def test_processing_a_local_file_needs_no_server_key(env, tmp_path, mongo):
    video = cfr_video(tmp_path / "clip.mp4", 30)
    command = readme_command("python app.py process")
    assert command[:3] == ["python", "app.py", "process"]
    done = run(["python", "app.py", "process", str(video), *command[4:], "--upload-id", "k1"],
               keyless_env(env))
    assert done.returncode == 0, done.stderr
    assert mongo.uploads.get_upload("k1")["status"] == 1


def test_executor_runs_jobs_without_server_key(env, mongo, contents):
    make_tasks(mongo, contents, "u1", 2)
    version = make_version(mongo)
    mongo.jobs.queue_job(*start_build(mongo, version))
    process = subprocess.Popen(readme_command("python executor.py"), env=keyless_env(env),
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        def built() -> bool:
            assert process.poll() is None, process.communicate()
            return (mongo.datasets.get_version(version) or {}).get("status") == 1
        wait_for(built, 120, "the executor to build the version")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def test_web_servers_still_refuse_to_start_without_a_key(env):
    run_env = keyless_env(env, GUNICORN_BIND="127.0.0.1:9")
    for start in ("SERVER_AUTH_KEY=... gunicorn", "SERVER_AUTH_KEY=... python app.py"):
        command = readme_command(start)
        done = run(command, run_env, timeout=60)
        assert done.returncode == 2 and NO_KEY in done.stderr, (command, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
