#!/usr/bin/env bash
# Installs everything sealvault needs on Debian or Ubuntu: the system packages (only those missing,
# through apt, with sudo when not root), the npm dependencies, the native build and the bundle.
set -euo pipefail
cd "$(dirname "$0")/.."

# build-essential/python3: node-gyp; libsecret-1-dev: keytar builds from source;
# libseccomp-dev: the sandbox helper's seccomp filter (libseccomp);
# libsodium-dev: the cryptography of docs/FORMAT.md, linked into the native addon;
# gnome-keyring, dbus, dbus-x11: a real Secret Service for the keychain and its tests;
# libsecret-tools (secret-tool): tests check the keychain with a client other than keytar;
# util-linux (script, setpriv, unshare): terminal tests and tests as an unprivileged user;
# passwd (useradd): tests as an unprivileged user; keyutils (keyctl): the keyring test;
# slirp4netns, nftables: lockdown's egress allow-lists (a grant's --net HOST:PORT);
# iproute2 (ip): the network tests' own namespace;
# zsh, fish: the completion tests load `vault completion zsh|fish` in the shells themselves.
packages=(build-essential python3 libsecret-1-dev libseccomp-dev libsodium-dev libsecret-tools gnome-keyring dbus dbus-x11 util-linux passwd git keyutils
  slirp4netns nftables iproute2 zsh fish)

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "sealvault needs Node.js 20 or newer (found: $(node --version 2>/dev/null || echo none)); install it first" >&2
  exit 1
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "installing system packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

# keytar builds from source where GitHub (its prebuilt binaries) is out of reach, and node-gyp would
# then fetch node's headers from nodejs.org: give it the running node's own when they are there
# (Debian's nodejs-dev puts them under /usr/include/node), as scripts/npm-install.mjs does for ours.
if [ -z "${npm_config_nodedir:-}" ]; then
  node_prefix=$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")
  if [ -f "$node_prefix/include/node/node_version.h" ]; then export npm_config_nodedir="$node_prefix"; fi
fi

# npm ci runs our own preinstall (scripts/npm-install.mjs: node-gyp) and prepare (the bundle); package.json's
# allowScripts lets keytar build from source under npm 11.
npm ci --no-audit --no-fund

# slirp4netns makes the sandbox's tap device through /dev/net/tun, which udev leaves open to every
# user (0666); some machines and containers do not. Said, not changed: it is the machine's setting.
if ! { : <>/dev/net/tun; } 2>/dev/null; then
  echo "note: /dev/net/tun cannot be opened by $(id -un), so grants with --net HOST:PORT will refuse to run;" \
    "a machine without udev needs: mkdir -p /dev/net && mknod -m 0666 /dev/net/tun c 10 200 (as root)" >&2
fi
