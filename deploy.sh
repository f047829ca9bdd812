#!/usr/bin/env bash
# Deploy or upgrade the assistant on this VM: pull the code, build the image, (re)start the
# container, wait until Docker reports it healthy, show its last log lines.
# Safe to run twice: an unchanged image leaves the running container as it is.
#
#   ./deploy.sh            CloudWatch logging (docker-compose.yml)
#   ./deploy.sh --local    json-file logging (adds docker-compose.local.yml)
#   ./deploy.sh --no-pull  deploy the working tree as it is
#
# Environment: DEPLOY_TIMEOUT (seconds to wait for healthy, default 120), LOG_LINES (default 30).
set -euo pipefail

cd "$(dirname "$0")"

pull=1
files=(-f docker-compose.yml)
for arg in "$@"; do
    case "$arg" in
        --local) files+=(-f docker-compose.local.yml) ;;
        --no-pull) pull=0 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "deploy.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done
timeout="${DEPLOY_TIMEOUT:-120}"
log_lines="${LOG_LINES:-30}"

# Compose v2 (docker compose) where installed, else the standalone docker-compose.
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose "${files[@]}")
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose "${files[@]}")
else
    echo "deploy.sh: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi

if [[ ! -f .env ]]; then
    echo "deploy.sh: .env is missing: cp .env.example .env and fill it in (docs/deploy.md)" >&2
    exit 1
fi

if [[ "$pull" == 1 ]] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "==> git pull"
    git pull --ff-only
fi

echo "==> build"
"${compose[@]}" build --pull assistant

echo "==> up"
# Recreates the container only if its image or configuration changed.
"${compose[@]}" up -d --remove-orphans

container="$("${compose[@]}" ps -q assistant)"
if [[ -z "$container" ]]; then
    echo "deploy.sh: the assistant container is not running" >&2
    exit 1
fi

echo "==> waiting up to ${timeout}s for the container to be healthy"
deadline=$((SECONDS + timeout))
status=""
while (( SECONDS < deadline )); do
    state="$(docker inspect --format '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$container")"
    running="${state%% *}"
    status="${state##* }"
    if [[ "$running" != "running" && "$running" != "restarting" ]]; then
        break
    fi
    # "none": HEALTH_PORT=0 turned the check off; running is all that can be known.
    if [[ "$status" == "healthy" || "$status" == "none" ]]; then
        break
    fi
    sleep 2
done

echo "==> last ${log_lines} log lines"
"${compose[@]}" logs --no-color --tail "$log_lines" assistant || true

if [[ "$status" == "healthy" || ("$status" == "none" && "$running" == "running") ]]; then
    # Each build leaves the previous image dangling; a 1 GB VM's disk is small too.
    docker image prune -f >/dev/null
    echo "==> deployed: $(docker inspect --format '{{.Config.Image}} started {{.State.StartedAt}}' "$container")"
    exit 0
fi
echo "deploy.sh: container is ${running}/${status} after ${timeout}s; see the logs above" >&2
exit 1
