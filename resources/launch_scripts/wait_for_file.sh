#!/usr/bin/env bash
# wait_for_file.sh PATH TIMEOUT_S
#
# Wait until PATH exists as a regular file (the server writes the client-startup JSON atomically, so once it
# exists it is complete), checking every second. Exit 0 when it is there, 1 after TIMEOUT_S seconds without
# it, 2 for wrong arguments. TIMEOUT_S = 0 checks once.
set -euo pipefail

if (($# != 2)); then
    echo "usage: $(basename "$0") PATH TIMEOUT_S" >&2
    exit 2
fi
path="$1"
timeout_s="$2"
if [[ ! "$timeout_s" =~ ^[0-9]+$ ]]; then
    echo "$(basename "$0"): TIMEOUT_S must be a whole number of seconds, got '$timeout_s'" >&2
    exit 2
fi

# count one-second sleeps rather than read a clock: this never gives up before TIMEOUT_S seconds have passed
waited_s=0
until [[ -f "$path" ]]; do
    if ((waited_s >= timeout_s)); then
        echo "$(basename "$0"): $path did not appear within ${timeout_s} s" >&2
        exit 1
    fi
    sleep 1
    waited_s=$((waited_s + 1))
done
echo "$(basename "$0"): $path is there (waited ${waited_s} s)" >&2
