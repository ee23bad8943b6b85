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
  # The daemon finishes creating its login keyring after --unlock returns. Wait (bounded) until an
  # item round-trips, so that the first keychain test does not race the keyring being set up (30 s:
  # on a loaded 2-core machine 10 s was once not enough).
  for attempt in $(seq 150); do
    if printf ready | secret-tool store --label=sealvault-test-ready service sealvault-test-ready account ready 2>/dev/null &&
       [ "$(secret-tool lookup service sealvault-test-ready account ready 2>/dev/null)" = ready ]; then
      secret-tool clear service sealvault-test-ready account ready
      break
    fi
    [ "$attempt" -lt 150 ] || { echo "test/run.sh: the Secret Service (gnome-keyring) did not store and return an item within 30s" >&2; exit 1; }
    sleep 0.2
  done
  export SEALVAULT_TEST_KEYCHAIN=required
  exec npx vitest run "$@"
' vitest "$@"
