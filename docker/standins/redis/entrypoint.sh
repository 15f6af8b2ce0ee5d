#!/bin/sh
# As the official image: redis-server runs as the redis user, in /data, and without a config
# file it listens on every interface with protected mode off.
set -eu
if [ "$1" = redis-server ]; then
    shift
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
fi
exec "$@"
