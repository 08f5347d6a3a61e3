#!/usr/bin/env bash
# Installs the pinned Open WebUI (requirements.txt beside this script) into a Python 3.11 virtual
# environment at KBSYNC_OPENWEBUI_DIR (default /opt/kbsync-peers/openwebui), outside the clone, and
# reuses that install when it already holds exactly this requirements file. ~7.3 GB, ~9 min the first
# time. Needs python3.11 (Open WebUI needs >= 3.11, < 3.13) and PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${KBSYNC_OPENWEBUI_DIR:-/opt/kbsync-peers/openwebui}"
if [ -x "$dest/venv/bin/open-webui" ] && cmp -s "$here/requirements.txt" "$dest/requirements.txt"; then
  echo "Open WebUI already installed in $dest"
  exit 0
fi
python=""
for candidate in python3.11 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 \
    && "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
    python=$(command -v "$candidate")
    break
  fi
done
if [ -z "$python" ]; then
  echo "Open WebUI needs Python 3.11 or 3.12; none found" >&2
  exit 1
fi
mkdir -p "$dest"
rm -f "$dest/requirements.txt"
"$python" -m venv "$dest/venv"
"$dest/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
# Written last: its presence marks a finished install.
cp "$here/requirements.txt" "$dest/requirements.txt"
echo "Open WebUI installed in $dest"
