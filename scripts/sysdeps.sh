#!/usr/bin/env bash
# System tools the sandbox tests need: bubblewrap, umoci, skopeo, slirp4netns (Debian/Ubuntu packages).
set -euo pipefail
missing=()
for tool in bwrap:bubblewrap umoci:umoci skopeo:skopeo slirp4netns:slirp4netns; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "please install: ${missing[*]}" >&2
  exit 1
fi
