#!/usr/bin/env bash
# Docker for real (issue 22), as root on a machine with no container registry: installs Debian's Docker engine,
# docker-compose and debootstrap when missing, starts a private dockerd, builds the local images (npm run images),
# runs the compose smoke test (npm run test:docker) and the int tier in Testcontainers, and stops the engine at the
# end, whatever happens. Expects `npm ci` and `npm run build` done (.ci/run does both before).
#
# The engine: its own socket, exec root and pid file under $TOLLGATE_DOCKER_RUN (default /tmp/tollgate-docker, removed
# at the end) and its image store in $TOLLGATE_DOCKER_DATA (default /var/cache/tollgate/docker: a cache, so a second
# run finds the images and builds nothing). Networking: `--iptables=false --ip-masq=false --ip-forward=false`, so it
# changes no firewall rule and routes nothing off the machine: containers on one bridge reach each other directly,
# published ports are served by docker-proxy on the host (`--ip=127.0.0.1`: on the loopback unless a file says
# otherwise), and `docker build --network host` reaches the machine's Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${TOLLGATE_DOCKER_RUN:-/tmp/tollgate-docker}"
data_dir="${TOLLGATE_DOCKER_DATA:-/var/cache/tollgate/docker}"
export DOCKER_HOST="unix://$run_dir/docker.sock"
started=$(date +%s)
step() { printf '\n== docker: %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

step "packages"
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
fi
dockerd --version

step "engine"
# Ends the dockerd whose pid file is in $run_dir, then unmounts what it left there (its network namespaces) and
# removes the folder; the image store stays (it is the cache).
end_dockerd() {
  if [ -f "$run_dir/dockerd.pid" ]; then
    pid=$(cat "$run_dir/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  grep -o " $run_dir[^ ]*" /proc/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$run_dir"
}
stop_engine() {
  local rc=$?
  set +e
  if [ -S "$run_dir/docker.sock" ]; then
    # Whatever a failed run left: containers of the smoke test's projects and of Testcontainers.
    ids=$(docker ps -aq --filter label=org.testcontainers=true; docker ps -aq --filter label=com.docker.compose.project)
    [ -n "$ids" ] && docker rm -f -v $ids >/dev/null 2>&1
    docker volume prune -f >/dev/null 2>&1
    docker network prune -f >/dev/null 2>&1
  fi
  end_dockerd
  printf '\n== docker: engine stopped (%ss in all)\n' "$(( $(date +%s) - started ))"
  exit $rc
}
trap stop_engine EXIT
if [ -f "$run_dir/dockerd.pid" ] && kill -0 "$(cat "$run_dir/dockerd.pid")" 2>/dev/null; then
  echo "stopping a dockerd left by an earlier run (pid $(cat "$run_dir/dockerd.pid"))"
fi
end_dockerd
mkdir -p "$run_dir/exec" "$data_dir"
dockerd -H "$DOCKER_HOST" --data-root "$data_dir" --exec-root "$run_dir/exec" --pidfile "$run_dir/dockerd.pid" \
  --iptables=false --ip-masq=false --ip-forward=false --ip=127.0.0.1 > "$run_dir/dockerd.log" 2>&1 &
for _ in $(seq 1 60); do docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && break; sleep 0.5; done
if ! docker version --format 'engine {{.Server.Version}} (API {{.Server.APIVersion}})'; then
  echo "dockerd did not answer at $DOCKER_HOST; its log:"; tail -40 "$run_dir/dockerd.log"; exit 1
fi

step "images"
npm run images

step "compose smoke test"
npm run test:docker

step "int tier in Testcontainers"
TOLLGATE_TESTCONTAINERS=require node scripts/with-infra.js npx jest --runInBand --forceExit --selectProjects int

step "done"
