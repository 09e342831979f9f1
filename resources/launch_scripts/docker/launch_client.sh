#!/usr/bin/env bash
# Run one skymap_scanner client in a container, with its files mounted.
#
#   launch_client.sh --client-startup-json STARTUP.json [other client options]   # long-lived worker
#   launch_client.sh --client-startup-json STARTUP.json --infile IN.json --outfile OUT.json  # one message (EWMS pilot)
#
# Arguments are those of `python -m skymap_scanner.client`. The client-startup JSON (written by the server;
# wait for it with ../wait_for_file.sh) and --infile are mounted read-only at /local/startup and /local/in,
# the directory of --outfile read-write at /local/out; the paths are rewritten to the container paths.
# Environment: see _common.sh (SKYSCAN_DOCKER_IMAGE_TAG, SKYSCAN_DOCKER_PULL_ALWAYS, forwarded variables).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=_common.sh
source "$(dirname -- "$(realpath -- "${BASH_SOURCE[0]}")")/_common.sh"

PATH_OPTIONS=(
    [--client-startup-json]="input_file /local/startup"
    [--infile]="input_file /local/in"
    [--outfile]="output_file /local/out"
)

add_docker_settings
rewrite_args "$@"
run_docker skymap_scanner.client "${PY_ARGS[@]}"
