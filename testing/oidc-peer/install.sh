#!/usr/bin/env bash
# Installs the pinned oidc-provider (package.json + package-lock.json beside this script) into
# KBSYNC_OIDC_PEER_DIR (default /opt/kbsync-peers/oidc-provider), outside the clone, and reuses that
# install when it already holds exactly this lock file. Needs node, npm and the npm registry.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${KBSYNC_OIDC_PEER_DIR:-/opt/kbsync-peers/oidc-provider}"
if [ -d "$dest/node_modules/oidc-provider" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json"; then
  echo "oidc-provider already installed in $dest"
  exit 0
fi
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
(cd "$dest" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
echo "oidc-provider installed in $dest"
