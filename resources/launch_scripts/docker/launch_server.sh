#!/usr/bin/env bash
# Run the skymap_scanner server in a container, with its files mounted.
#
#   launch_server.sh --event-file EVENT --reco-algo RECO --output-dir OUT --cache-dir CACHE \
#                    --client-startup-json STARTUP.json [other server options]
#
# Arguments are those of `python -m skymap_scanner.server`. The paths are mounted (event file read-only at
# /local/event, output and cache directories at /local/output and /local/cache, the directory that will hold
# the client-startup JSON at /local/startup) and rewritten to the container paths; the others pass unchanged.
# Environment: see _common.sh (SKYSCAN_DOCKER_IMAGE_TAG, SKYSCAN_DOCKER_PULL_ALWAYS, forwarded variables).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname -- "$(realpath -- "${BASH_SOURCE[0]}")")/_common.sh"

PATH_OPTIONS=(
    [--event-file]="input_file /local/event"
    [--output-dir]="output_dir /local/output"
    [--cache-dir]="output_dir /local/cache"
    [--client-startup-json]="output_file /local/startup"
)

add_docker_settings
rewrite_args "$@"
run_docker skymap_scanner.server "${PY_ARGS[@]}"
