#!/bin/sh
# Stand-ins for the official python, postgres and redis images, built from Debian's own packages
# for a machine that cannot pull from a registry. Cached: an image that exists is kept; --rebuild
# makes them anew. Names: rlhf-standin/{debian,python,postgres,redis}:bookworm.
#
#   docker/standins/build.sh [--rebuild]      (DEBIAN_MIRROR=... to choose the mirror)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ca=${HOST_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
rebuild=${1:-}

have() { [ "$rebuild" != --rebuild ] && docker image inspect "$1" >/dev/null 2>&1; }

base=rlhf-standin/debian:bookworm
if ! have "$base"; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    echo "standins: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    tar -C "$root" -c . | docker import - "$base" >/dev/null
    rm -rf "$root"
fi
for name in python postgres redis; do
    image=rlhf-standin/$name:bookworm
    have "$image" && continue
    echo "standins: building $image"
    context=$(mktemp -d)
    cp -r "$here/$name/." "$context/"
    # pip in the python stand-in trusts what this machine trusts (e.g. a proxy's CA).
    [ "$name" = python ] && cp "$ca" "$context/ca-certificates.crt"
    docker build -q --build-arg BASE="$base" -t "$image" "$context" >/dev/null
    rm -rf "$context"
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^rlhf-standin/'
