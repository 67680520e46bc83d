"""Schemathesis against the live service, from its own /api/openapi.json.

gunicorn is started as README.md says, with a fresh contents folder holding the
video the document's examples name (uploads/cam1.mp4), so that generated
requests reach the accept path (202, then 200/409 for repeats) and the links
(202 -> status) lead to real uploads. Every check must pass: no 5xx, only
documented statuses and content types, responses as documented, schema-invalid
requests refused and valid ones accepted, undeclared methods answered 405 with
Allow, the key enforced.
"""
from __future__ import annotations

import shutil
import subprocess

from conftest import AUTH_KEY
from live_server import LiveServer
from media import cfr_video

# Bounded: about 20-40 s on two busy cores. A fixed seed makes a failure
# reproducible (the output names it); change it to explore other inputs.
EXAMPLES_PER_OPERATION = 25
SEED = 20261127


def test_schemathesis_finds_nothing(env, contents, mongo):
    cfr_video(contents / "uploads" / "cam1.mp4", 15)
    st = shutil.which("st")
    assert st, "schemathesis is not installed (requirements-dev.txt)"
    server = LiveServer(env).wait_ready()
    try:
        result = subprocess.run(
            [st, "run", f"{server.base}/api/openapi.json", "--header",
             f"X-Auth-Key: {AUTH_KEY}", "--checks", "all", "--max-examples",
             str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--workers", "1",
             "--generation-database", "none", "--request-timeout", "10", "--no-color",
             "--max-failures", "20"],
            # Its cache (.schemathesis/) goes to the test's folder, not the repo.
            cwd=contents.parent, capture_output=True, text=True, timeout=240)
    finally:
        server.stop()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert " passed" in output and "Tested: 9" in output, output[-5000:]
    # The examples reached the accept path: the documented example upload exists.
    assert mongo.uploads.get_upload("cam1-0001") is not None, output[-5000:]
