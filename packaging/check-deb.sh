#!/usr/bin/env bash
# CI's package check: builds the Debian package (dev profile), installs it with dpkg, verifies the
# systemd unit, starts the installed binary as the service user with the packaged configuration
# and secrets file, waits for /readyz, then purges the package and what the check created.
# Needs root (dpkg, the service user). Refuses to run where kbsync is already installed.
#
#   packaging/check-deb.sh [kbsync_*.deb]    checks the given package instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then echo "check-deb: needs root (dpkg -i)" >&2; exit 1; fi
if dpkg-query -W -f='${Status}' kbsync 2>/dev/null | grep -q "ok installed"; then
  echo "check-deb: kbsync is installed on this machine already; not touching it" >&2
  exit 1
fi
command -v systemd-analyze >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
}

deb=${1:-$(packaging/build-deb.sh --dev)}
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n '/Package:/,/Description:/p'

server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  dpkg --purge kbsync >/dev/null 2>&1 || true
  getent passwd kbsync >/dev/null && deluser --system kbsync >/dev/null 2>&1 || true
  getent group kbsync >/dev/null && delgroup --system kbsync >/dev/null 2>&1 || true
  rm -rf /var/lib/kbsync
}
trap cleanup EXIT

dpkg -i "$deb"

# What the package installed, and with which owners and modes.
test -x /usr/bin/kbsync
test -f /usr/lib/systemd/system/kbsync.service
[[ $(stat -c '%U:%G %a' /etc/kbsync/kbsync.env) == "root:kbsync 640" ]] \
  || { echo "kbsync.env: $(stat -c '%U:%G %a' /etc/kbsync/kbsync.env), expected root:kbsync 640" >&2; exit 1; }
[[ $(stat -c '%U:%G' /var/lib/kbsync) == "kbsync:kbsync" ]]
getent passwd kbsync | grep -q ':/var/lib/kbsync:' 
dpkg-query -W -f='${Conffiles}\n' kbsync | grep -q /etc/kbsync/kbsync.toml

# The unit: systemd's own checks. It exits non-zero for a missing binary but only warns about an
# unknown key or a bad value, so any output fails too.
verify=$(systemd-analyze verify /usr/lib/systemd/system/kbsync.service 2>&1) \
  || { echo "check-deb: systemd-analyze verify failed: $verify" >&2; exit 1; }
if [[ -n "$verify" ]]; then echo "check-deb: systemd-analyze verify warned: $verify" >&2; exit 1; fi

# Start the installed binary as the service would: its user, its working directory, its
# configuration and secrets file. Only the port changes, to one that is free here.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
(
  cd /var/lib/kbsync
  set -a; . /etc/kbsync/kbsync.env; set +a
  exec runuser -u kbsync -- env KBSYNC_CONFIG=/etc/kbsync/kbsync.toml \
    KBSYNC_BIND="127.0.0.1:$port" KBSYNC_PUBLIC_URL="http://127.0.0.1:$port" \
    /usr/bin/kbsync serve
) >"$log" 2>&1 &
server=$!

ready=""
for _ in $(seq 1 300); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.2
done
if [[ -z "$ready" ]]; then
  echo "check-deb: the installed kbsync did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
fi
echo "readyz: $(curl -fsS "http://127.0.0.1:$port/readyz")"

# It keeps its state where the package says, owned by the service user, the key private.
[[ $(stat -c '%U %a' /var/lib/kbsync/secret_key) == "kbsync 600" ]]
test -f /var/lib/kbsync/kbsync.sqlite
rm -f "$log"
echo "check-deb: installed, verified, served /readyz as the kbsync user"
