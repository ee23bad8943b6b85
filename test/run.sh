#!/usr/bin/env bash
# The full test suite: type check, then vitest inside a private D-Bus session with a real,
# unlocked gnome-keyring as its Secret Service, so that keychain tests use the real thing.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p .
keyring_home=$(mktemp -d)
trap 'rm -rf "$keyring_home"' EXIT
export SEALVAULT_TEST_KEYRING_HOME="$keyring_home"
exec dbus-run-session -- bash -c '
  export XDG_DATA_HOME="$SEALVAULT_TEST_KEYRING_HOME" HOME="$SEALVAULT_TEST_KEYRING_HOME"
  printf "sealvault-test-keyring\n" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
  export SEALVAULT_TEST_KEYCHAIN=required
  exec npx vitest run "$@"
' vitest "$@"
