#!/usr/bin/env bash
# Builds the Debian package of kbsync into target/debian/ and prints its path.
#
#   packaging/build-deb.sh            a release build (what to install on a server)
#   packaging/build-deb.sh --dev      the dev-profile binary the tests use (CI checks the package
#                                     with it; a release build takes ~20 min more on 2 cores)
#
# Needs cargo-deb (installed here when missing) and dpkg-dev (dpkg-shlibdeps, for the package's
# library dependencies).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
if [[ "${1:-}" == "--dev" ]]; then profile=dev; fi

command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb --version 3.8.0
command -v dpkg-shlibdeps >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
}

if [[ "$profile" == dev ]]; then
  # Exactly the binary the tests ran (the tests' build enables features a plain `cargo build -p
  # kbsync` does not, so that would compile again); after `cargo test --workspace` this builds nothing.
  cargo test --workspace --no-run >&2
else
  cargo build -p kbsync --profile "$profile" >&2
fi
cargo deb -p kbsync --profile "$profile" --no-build >&2
ls -t target/debian/kbsync_*.deb | head -n1
