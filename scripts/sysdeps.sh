#!/usr/bin/env bash
# System tools for sandboxed batch jobs: bubblewrap (every job), slirp4netns (jobs with
# network=True), umoci and skopeo (OCI images and tarballs). Debian/Ubuntu packages; installs
# only what is missing and says what it does.
# `make test` and `make demo` run it; the demo goes on without them (it skips its batch part).
set -euo pipefail
missing=()
for tool in bwrap:bubblewrap umoci:umoci skopeo:skopeo slirp4netns:slirp4netns; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool##*:}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing system tools for sandboxed jobs: ${missing[*]}" >&2
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  sudo apt-get update -qq
  sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "cannot install ${missing[*]} here (no apt-get, or not root and no sudo): please install them" >&2
  exit 1
fi
