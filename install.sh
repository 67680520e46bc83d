#!/usr/bin/env bash
# Install the service's dependencies: ./install.sh (runtime) or ./install.sh dev (+ tests, benchmarks).
#
# facenet-pytorch is installed on its own with --no-deps: the service uses only
# the MTCNN weights its wheel carries (the built-in face detector), and its
# metadata pins old torch/numpy versions that would otherwise be pulled in.
# scenedetect likewise (shot detection): its metadata requires opencv-python,
# whose cv2 would replace opencv-python-headless's (the service needs no GUI);
# its other dependencies are in requirements.txt.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")"
pip=(python3 -m pip install --quiet --disable-pip-version-check)
if [ "${1:-}" = "dev" ]; then
  # The Celery tests start a real redis-server, the seeking tests a headless
  # chromium (Debian's packages, named as their commands).
  for tool in redis-server chromium; do
    command -v "$tool" >/dev/null && continue
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
    else
      echo "$tool not found (apt-get install $tool): the tests that need it will be skipped" >&2
    fi
  done
  "${pip[@]}" -r requirements-dev.txt
else
  "${pip[@]}" -r requirements.txt
fi
"${pip[@]}" --no-deps facenet-pytorch==2.6.0 scenedetect==0.7.2
