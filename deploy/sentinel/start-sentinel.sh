#!/bin/sh
# One Redis Sentinel of docker-compose.yml's `ha` profile (also run by tests/test_compose.py).
# Sentinel rewrites its config file as it learns the topology, so the file is written here, into
# a writable directory, from the environment:
#   REDIS_SENTINEL_MASTER    the name clients ask for (zapi-master)
#   REDIS_PRIMARY_HOST/PORT  the primary at first (redis:6379); Sentinel follows failovers
#   REDIS_PASSWORD           the Redis servers' password, if any
#   REDIS_SENTINEL_PASSWORD  this Sentinel's own password, if any
#   SENTINEL_PORT            26379; SENTINEL_QUORUM 2; SENTINEL_DOWN_AFTER_MS 5000
#   SENTINEL_DIR             where the config lives (/data)
set -eu
master="${REDIS_SENTINEL_MASTER:-zapi-master}"
conf="${SENTINEL_DIR:-/data}/sentinel.conf"
{
  echo "port ${SENTINEL_PORT:-26379}"
  echo "dir ${SENTINEL_DIR:-/data}"
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel monitor $master ${REDIS_PRIMARY_HOST:-redis} ${REDIS_PRIMARY_PORT:-6379} ${SENTINEL_QUORUM:-2}"
  echo "sentinel down-after-milliseconds $master ${SENTINEL_DOWN_AFTER_MS:-5000}"
  echo "sentinel failover-timeout $master ${SENTINEL_FAILOVER_TIMEOUT_MS:-60000}"
  echo "sentinel parallel-syncs $master 1"
  if [ -n "${REDIS_PASSWORD:-}" ]; then
    echo "sentinel auth-pass $master $REDIS_PASSWORD"
  fi
  if [ -n "${REDIS_SENTINEL_PASSWORD:-}" ]; then
    echo "requirepass $REDIS_SENTINEL_PASSWORD"
    echo "sentinel sentinel-pass $REDIS_SENTINEL_PASSWORD"
  fi
} > "$conf"
exec "${REDIS_SERVER:-redis-server}" "$conf" --sentinel
