#!/usr/bin/env bash
# Install the service's dependencies: ./install.sh (runtime) or ./install.sh dev (+ tests, benchmarks).
#
# facenet-pytorch is installed on its own with --no-deps: the service uses only
# the MTCNN weights its wheel carries (the built-in face detector), and its
# metadata pins old torch/numpy versions that would otherwise be pulled in.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
cd "$(dirname "$0")"
pip=(python3 -m pip install --quiet --disable-pip-version-check)
if [ "${1:-}" = "dev" ]; then
  "${pip[@]}" -r requirements-dev.txt
else
  "${pip[@]}" -r requirements.txt
fi
"${pip[@]}" --no-deps facenet-pytorch==2.6.0
