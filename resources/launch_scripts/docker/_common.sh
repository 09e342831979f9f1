# shellcheck shell=bash
# Shared by launch_server.sh and launch_client.sh (sourced, not run): builds the `docker run` argument list.
#
# Settings (all optional):
#   SKYSCAN_DOCKER_IMAGE        image name              (default icecube/skymap_scanner)
#   SKYSCAN_DOCKER_IMAGE_TAG    image tag               (default latest)
#   SKYSCAN_DOCKER_PULL_ALWAYS  1: --pull always, 0: --pull missing (default 1; 0 for a locally built image)
#   SKYSCAN_DOCKER_USER         UID[:GID] the container runs as (default the caller's, so that the files
#                               written into the mounts are theirs; a root caller may prefer the image's 10001)
# Every environment variable whose name starts with SKYSCAN_, EWMS_, PULSAR_ or RABBITMQ_ is forwarded by
# name (`--env NAME`: docker reads the value from its own environment, so values such as tokens never
# appear on a command line); no other variable is. SKYSCAN_BROKER_AUTH_FILE names a host file: it is
# mounted read-only and the variable is pointed at the container path.

SKYSCAN_FORWARD_RE='^(SKYSCAN_|EWMS_|PULSAR_|RABBITMQ_)'

DOCKER_ARGS=()      # options of `docker run`, before the image
CONTAINER_PATH=""   # result of the mount_* functions

die() {  # die CODE MESSAGE: one line on stderr, exit CODE
    echo "$(basename "$0"): $2" >&2
    exit "$1"
}

check_mountable() {  # --mount splits its value on commas, so a path with a comma cannot be given to it
    case "$1" in
        *,*) die 2 "cannot mount a path containing a comma: $1" ;;
    esac
}

mount_input_file() {  # mount_input_file OPTION HOST_PATH CONTAINER_DIR: read-only bind of one existing file
    local host
    [[ -f "$2" ]] || die 2 "$1: no such file: $2"
    host="$(realpath -- "$2")"
    check_mountable "$host"
    CONTAINER_PATH="$3/$(basename -- "$host")"
    DOCKER_ARGS+=(--mount "type=bind,source=$host,target=$CONTAINER_PATH,readonly")
}

mount_output_dir() {  # mount_output_dir OPTION HOST_DIR CONTAINER_DIR: read-write bind, created if missing
    local host
    [[ -n "$2" ]] || die 2 "$1: empty path"
    mkdir -p -- "$2" || die 2 "$1: cannot create directory $2"
    host="$(realpath -- "$2")"
    check_mountable "$host"
    CONTAINER_PATH="$3"
    DOCKER_ARGS+=(--mount "type=bind,source=$host,target=$CONTAINER_PATH")
}

mount_output_file() {  # mount_output_file OPTION HOST_PATH CONTAINER_DIR: read-write bind of the parent dir
    # (the parent, not the file: files are written atomically, a temp file renamed into place)
    local parent
    [[ -n "$2" && "$2" != */ ]] || die 2 "$1: not a file path: '$2'"
    parent="$(dirname -- "$2")"
    mount_output_dir "$1" "$parent" "$3"
    CONTAINER_PATH="$3/$(basename -- "$2")"
}

add_docker_settings() {  # image-independent options: cleanup, init, network, user, pull policy, environment
    local policy name user
    case "${SKYSCAN_DOCKER_PULL_ALWAYS:-1}" in
        1) policy=always ;;
        0) policy=missing ;;
        *) die 2 "SKYSCAN_DOCKER_PULL_ALWAYS must be 1 or 0, got '${SKYSCAN_DOCKER_PULL_ALWAYS}'" ;;
    esac
    user="${SKYSCAN_DOCKER_USER:-$(id -u):$(id -g)}"
    [[ "$user" =~ ^[0-9]+(:[0-9]+)?$ ]] || die 2 "SKYSCAN_DOCKER_USER must be UID or UID:GID, got '$user'"
    # --network host: the broker is usually reached at an address of the host (127.0.0.1 when local);
    # --user: files written into the mounted directories belong to the caller, not to root.
    DOCKER_ARGS+=(run --rm --init --network host --pull "$policy" --user "$user")
    while IFS= read -r name; do
        if [[ "$name" =~ $SKYSCAN_FORWARD_RE ]]; then
            if [[ "$name" == SKYSCAN_BROKER_AUTH_FILE ]]; then
                mount_input_file SKYSCAN_BROKER_AUTH_FILE "$SKYSCAN_BROKER_AUTH_FILE" /local/secrets
                DOCKER_ARGS+=(--env "SKYSCAN_BROKER_AUTH_FILE=$CONTAINER_PATH")
            else
                DOCKER_ARGS+=(--env "$name")
            fi
        fi
    done < <(compgen -e | LC_ALL=C sort)
}

image_ref() {
    local name="${SKYSCAN_DOCKER_IMAGE:-icecube/skymap_scanner}" tag="${SKYSCAN_DOCKER_IMAGE_TAG:-latest}"
    [[ -n "$tag" && "$tag" != *[[:space:]:/@]* ]] || die 2 "SKYSCAN_DOCKER_IMAGE_TAG is not a valid tag: '$tag'"
    echo "$name:$tag"
}

run_docker() {  # run_docker MODULE ARGS...: show the command (no values of variables in it) and exec it
    local image
    image="$(image_ref)"
    echo "+ docker ${DOCKER_ARGS[*]} $image python -m $*" >&2
    exec docker "${DOCKER_ARGS[@]}" "$image" python -m "$@"
}

# PATH_OPTIONS maps each option of the python module whose value is a host path to "KIND CONTAINER_DIR"
# (KIND: input_file | output_dir | output_file); set by the launching script before rewrite_args.
declare -A PATH_OPTIONS=()
PY_ARGS=()  # result of rewrite_args: the module's arguments with host paths replaced by container paths

rewrite_args() {  # rewrite_args ARGS...: mount every path option's value and point the option at the mount
    local opt val known kind dir
    while (($#)); do
        opt="$1"
        shift
        if [[ "$opt" == --*=* && -n "${PATH_OPTIONS[${opt%%=*}]+set}" ]]; then
            val="${opt#*=}"
            opt="${opt%%=*}"
        elif [[ -n "${PATH_OPTIONS[$opt]+set}" ]]; then
            (($#)) || die 2 "$opt needs a value"
            val="$1"
            shift
        else
            if [[ "$opt" == --?* ]]; then
                # argparse accepts unambiguous abbreviations; an abbreviated path option would reach the
                # container with a host path, so insist on the full name
                for known in "${!PATH_OPTIONS[@]}"; do
                    [[ "$known" == "${opt%%=*}"* ]] && die 2 "write $known in full (got ${opt%%=*})"
                done
            fi
            PY_ARGS+=("$opt")
            continue
        fi
        read -r kind dir <<<"${PATH_OPTIONS[$opt]}"
        "mount_$kind" "$opt" "$val" "$dir"
        PY_ARGS+=("$opt" "$CONTAINER_PATH")
    done
}
