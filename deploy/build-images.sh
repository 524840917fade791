#!/usr/bin/env bash
# Builds the relay images (management server, agent, rotator) without a Docker daemon:
# each is a root filesystem holding one binary, exactly the shared libraries it loads,
# CA roots, and a non-root user, imported with `podman import`.
#
#   deploy/build-images.sh [--tag TAG] [--repository PREFIX] [--bin-dir DIR]
#
# Without --bin-dir (a directory holding server, agent, rotator and relayctl) it builds
# the binaries first (tools/bazel build -c opt). Images (relayctl is in the server's):
#   PREFIX/mgmt-server:TAG  PREFIX/agent:TAG  PREFIX/rotator:TAG   (default relay/...:dev)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
tag=dev
prefix=relay
bin_dir=""
while (( $# > 0 )); do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --tag=*) tag=${1#--tag=}; shift ;;
    --repository) prefix=$2; shift 2 ;;
    --repository=*) prefix=${1#--repository=}; shift ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --bin-dir=*) bin_dir=${1#--bin-dir=}; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v podman >/dev/null || { echo "build-images: podman is not installed (apt-get install podman runc)" >&2; exit 1; }
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/podman/containers.conf}

if [[ -z "$bin_dir" ]]; then
  (cd "$repo" && tools/bazel build -c opt //mgmt:server //agent:agent //rotator:rotator //tools:relayctl >&2)
  out=$(cd "$repo" && tools/bazel info -c opt bazel-bin 2>/dev/null)
  bin_dir=$(mktemp -d)
  trap 'rm -rf "$bin_dir"' EXIT
  cp "$out/mgmt/server" "$out/agent/agent" "$out/rotator/rotator" "$out/tools/relayctl" "$bin_dir/"
fi

readonly RELAY_UID=65532

# build_image BINARY NAME IMAGE [EXTRA_BINARY...]: NAME is the entrypoint; extra
# binaries (relayctl in the server image) go beside it.
build_image() {
  local binary=$1 name=$2 image=$3
  shift 3
  local root
  root=$(mktemp -d)
  mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bin_dir/$binary" "$root/usr/local/bin/$name"
  local extra
  for extra in "$@"; do install -m 0755 "$bin_dir/$extra" "$root/usr/local/bin/$extra"; done
  # The loader and every library the binaries load, at the paths they load them from.
  local lib
  while read -r lib; do
    [[ -n "$lib" && -e "$lib" ]] && cp -L --parents "$lib" "$root"
  done < <(for b in "$root"/usr/local/bin/*; do ldd "$b"; done | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u)
  cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nrelay:x:%d:%d:relay:/nonexistent:/sbin/nologin\n' \
    "$RELAY_UID" "$RELAY_UID" > "$root/etc/passwd"
  printf 'root:x:0:\nrelay:x:%d:\n' "$RELAY_UID" > "$root/etc/group"
  printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n::1 localhost\n' > "$root/etc/hosts"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    podman import --quiet \
      --change "USER=${RELAY_UID}:${RELAY_UID}" \
      --change "WORKDIR=/" \
      --change "ENTRYPOINT=[\"/usr/local/bin/$name\"]" \
      --change "LABEL org.opencontainers.image.title=relay-$name" \
      - "$image" >/dev/null
  rm -rf "$root"
  echo "$image"
}

build_image server mgmt-server "$prefix/mgmt-server:$tag" relayctl
build_image agent agent "$prefix/agent:$tag"
build_image rotator rotator "$prefix/rotator:$tag"
