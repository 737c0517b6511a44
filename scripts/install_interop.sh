#!/usr/bin/env bash
# Installs the tools tests/test_take_interop.py runs the take files through (idempotent; quick when present):
#   - Blender with the system numpy (Debian's blender 3.4 + python3-numpy), when run as root with apt-get;
#   - the Khronos glTF validator (npm gltf-validator, pinned) into ./.cache/npm, with node/npm from Debian
#     when they are missing and we are root.
# Anything that cannot be installed is a warning, not a failure: those tests then skip.
set -uo pipefail
cd "$(dirname "$0")/.."
VALIDATOR=gltf-validator@2.0.0-dev.3.10
is_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_updated=""
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  [ -n "$apt_updated" ] || { apt-get update -qq && apt_updated=1; }
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v blender >/dev/null || ! dpkg -s python3-numpy >/dev/null 2>&1; then
  if is_root; then
    echo "installing Debian packages: blender python3-numpy"
    apt_install blender python3-numpy || echo "warning: could not install blender python3-numpy" >&2
  else
    echo "warning: blender / python3-numpy missing (install: sudo apt-get install blender python3-numpy)" >&2
  fi
fi

if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  if is_root; then
    echo "installing Debian packages: nodejs npm"
    apt_install nodejs npm || echo "warning: could not install nodejs npm" >&2
  fi
fi
if [ ! -f .cache/npm/node_modules/gltf-validator/package.json ]; then
  if command -v npm >/dev/null && command -v node >/dev/null; then
    echo "installing $VALIDATOR into .cache/npm"
    mkdir -p .cache/npm
    npm install --silent --no-audit --no-fund --prefix .cache/npm "$VALIDATOR" \
      || echo "warning: could not install $VALIDATOR" >&2
  else
    echo "warning: node/npm missing, the glTF validator test will skip (install: sudo apt-get install nodejs npm)" >&2
  fi
fi
echo "interop tools ready"
exit 0
