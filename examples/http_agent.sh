#!/bin/sh
# An agent loop over the gateway's HTTP API with nothing but curl: heartbeat before each step,
# stop on a kill, acknowledge it (with metadata and a checkpoint), wait for the resume, go on.
#
#   MESH_KEY=mk-... MESH_URL=http://127.0.0.1:8790 sh examples/http_agent.sh
#
# MESH_INSTANCE names the instance (unless the key fixes one); STEPS ends the loop after that
# many steps (default: run until killed with action "raise"); STEP_SECONDS paces it (default 1).
set -eu

URL="${MESH_URL:-http://127.0.0.1:8790}/api/v1"
STEPS="${STEPS:-0}"
PAUSE="${STEP_SECONDS:-1}"
: "${MESH_KEY:?set MESH_KEY to the agent's gateway key (mesh gateway key create ...)}"

api() {  # api METHOD PATH [JSON]: the response body on stdout; fails on an HTTP error
    if [ -n "${MESH_INSTANCE:-}" ]; then
        set -- "$@" -H "X-Mesh-Instance: $MESH_INSTANCE"
    fi
    method=$1 path=$2
    shift 2
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        body=$1
        shift
        curl -sS --fail-with-body -X "$method" "$URL$path" -H "Authorization: Bearer $MESH_KEY" \
            -H "Content-Type: application/json" -d "$body" "$@"
    else
        curl -sS --fail-with-body -X "$method" "$URL$path" -H "Authorization: Bearer $MESH_KEY" "$@"
    fi
}

# Where we were: the checkpoint's state is {"done": N}.
done_=$(api GET /checkpoint | sed -n 's/.*"state":{"done":\([0-9]*\)}.*/\1/p')
done_=${done_:-0}
echo "starting at step $done_"

while [ "$STEPS" -eq 0 ] || [ "$done_" -lt "$STEPS" ]; do
    answer=$(api POST /heartbeat "{\"metadata\": {\"done\": $done_}, \"interval\": 5}")
    case "$answer" in
    *'"killed":true'*)
        action=$(printf '%s' "$answer" | sed -n 's/.*"action":"\([a-z]*\)".*/\1/p')
        echo "killed (action $action) at step $done_"
        api POST /halted "{\"metadata\": {\"done\": $done_}, \"checkpoint\": {\"done\": $done_}}" >/dev/null
        echo "acknowledged"
        if [ "$action" = "raise" ]; then
            api POST /heartbeat '{"status": "stopped"}' >/dev/null
            echo "stopped"
            exit 0
        fi
        # Long-poll until the kill is lifted (each poll returns at once when it is).
        until api GET "/control?killed=true&wait=30" | grep -q '"killed":false'; do :; done
        echo "resumed at step $done_"
        continue
        ;;
    esac
    done_=$((done_ + 1))  # the work of one step goes here
    api POST /checkpoint "{\"state\": {\"done\": $done_}}" >/dev/null
    echo "step $done_"
    sleep "$PAUSE"
done
api POST /heartbeat "{\"status\": \"stopped\", \"metadata\": {\"done\": $done_}}" >/dev/null
echo "stopped"
