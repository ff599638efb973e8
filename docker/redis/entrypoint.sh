#!/bin/sh
# `redis-server ...` listens on every interface of the container with protected mode off (as the public image does);
# any other command runs as given (redis-cli, a shell).
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --bind '* -::*' --protected-mode no "$@"
fi
exec "$@"
