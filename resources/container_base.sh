#!/usr/bin/env bash
# container_base.sh: make a local Debian base image for the Dockerfiles on a machine with no container registry.
#
#   ref="$(resources/container_base.sh)"      # e.g. skymap-scanner-base:bookworm-1a2b3c4d5e6f, on stdout
#   docker build --network host --build-arg BASE_IMAGE="$ref" -t icecube/skymap_scanner:latest .
#
# The image is Debian `minbase` from debootstrap (with the suite's updates and security fixes), plus python3,
# python3-venv and ca-certificates, with the host's CA bundle copied in (/etc/ssl/certs/ca-certificates.crt;
# pip, requests and OpenSSL are pointed at it), so that pip inside a build works behind the same TLS-intercepting
# proxy as the host. It is tagged by a content hash of its inputs (this script, the suite, the mirrors, the
# architecture and the CA bundle): when an image with that tag exists, nothing is done. Needs root, debootstrap
# and a running Docker daemon.
#
# Settings (all optional):
#   SKYSCAN_BASE_SUITE     Debian suite         (default bookworm: python3 3.11)
#   SKYSCAN_BASE_MIRROR    Debian mirror        (default: the first .../debian URI in /etc/apt/sources.list*)
#   SKYSCAN_BASE_SECURITY  security mirror      (default: the first .../debian-security URI there)
#   SKYSCAN_BASE_NAME      image name           (default skymap-scanner-base)
#   SKYSCAN_BASE_CA        CA bundle to copy in (default /etc/ssl/certs/ca-certificates.crt)
# Exit codes: 0 the image exists (its reference on stdout), 1 a step failed, 2 a missing tool or wrong setting.
set -euo pipefail

suite="${SKYSCAN_BASE_SUITE:-bookworm}"
name="${SKYSCAN_BASE_NAME:-skymap-scanner-base}"
ca_bundle="${SKYSCAN_BASE_CA:-/etc/ssl/certs/ca-certificates.crt}"
packages=(python3 python3-venv ca-certificates)
apt_opts=(-o APT::Sandbox::User=root -y -qq)  # the sandbox user cannot write into debootstrap's root-owned tree

log() { echo "$(basename "$0"): $*" >&2; }
die() {  # die CODE MESSAGE
    log "$2"
    exit "$1"
}

# the first URI in the machine's apt sources (deb822 .sources or one-line .list files) whose path ends in /ARCHIVE
apt_uri() {  # apt_uri ARCHIVE
    local files=() uri
    shopt -s nullglob
    files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    shopt -u nullglob
    ((${#files[@]})) || return 0
    while read -r uri; do
        if [[ "$uri" =~ ^https?://[^[:space:]]+/$1/?$ ]]; then
            echo "${uri%/}"
            return 0
        fi
    done < <(sed -n -E -e 's/^URIs:[[:space:]]*//p' -e 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' \
        "${files[@]}" 2>/dev/null | tr ' ' '\n')
}

command -v docker >/dev/null 2>&1 || die 2 "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die 2 "the Docker daemon is not reachable (start dockerd as root)"
[[ -r "$ca_bundle" ]] || die 2 "SKYSCAN_BASE_CA: cannot read the CA bundle $ca_bundle"
[[ "$suite" =~ ^[a-z]+$ ]] || die 2 "SKYSCAN_BASE_SUITE is not a Debian suite name: '$suite'"
mirror="${SKYSCAN_BASE_MIRROR:-$(apt_uri debian)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="${SKYSCAN_BASE_SECURITY:-$(apt_uri debian-security)}"
security="${security:-http://deb.debian.org/debian-security}"
arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"

# everything that decides the image's content goes into its tag
hash="$( { sha256sum <"${BASH_SOURCE[0]}"; echo "$suite $mirror $security $arch ${packages[*]}"; sha256sum <"$ca_bundle"; } \
    | sha256sum | cut -c1-12)"
ref="$name:$suite-$hash"
if docker image inspect "$ref" >/dev/null 2>&1; then
    log "$ref exists"
    echo "$ref"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || die 2 "debootstrap is not installed (Debian: apt-get install debootstrap)"
((EUID == 0)) || die 2 "debootstrap and chroot need root"

root="$(mktemp -d "${TMPDIR:-/tmp}/skyscan-base.XXXXXX")"
[[ "$root" == /*/skyscan-base.* && -d "$root" ]] || die 1 "mktemp gave an unexpected directory: '$root'"
steplog="$root.log"
cleanup() {
    # a failed step may leave /proc mounted inside the new root; never delete through a mount
    if mountpoint -q "$root/proc" 2>/dev/null; then umount "$root/proc" || return 0; fi
    rm -rf --one-file-system -- "$root" "$steplog"
}
trap cleanup EXIT

step() {  # step WHAT COMMAND...: run with its output in a log, shown (the end of it) only on failure
    local what=$1
    shift
    "$@" >"$steplog" 2>&1 || { tail -20 "$steplog" >&2; die 1 "$what failed"; }
}

in_root() {  # in_root COMMAND...: run in the new root with a clean environment
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"
}

start=$SECONDS
log "debootstrap --variant=minbase $suite from $mirror (arch $arch)"
step debootstrap debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$mirror"

log "installing ${packages[*]} (with $suite-updates and $suite-security)"
printf 'deb %s %s main\n' "$mirror" "$suite" "$mirror" "$suite-updates" "$security" "$suite-security" \
    >"$root/etc/apt/sources.list"
mount -t proc proc "$root/proc"
step "apt-get update" in_root apt-get "${apt_opts[@]}" update
step "apt-get upgrade" in_root apt-get "${apt_opts[@]}" upgrade
step "apt-get install" in_root apt-get "${apt_opts[@]}" install --no-install-recommends "${packages[@]}"
umount "$root/proc"

# the host's bundle, which also holds the proxy's CA when there is one
install -m 0644 "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
# cheap to drop, never read by the scanner: package lists and archives, documentation, man pages, locales
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log \
    "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# Docker supplies these at run time; the host's copies must not end up in the image
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"

log "importing as $ref"
crt=/etc/ssl/certs/ca-certificates.crt
tar -C "$root" --numeric-owner -c . | docker import \
    --change "ENV SSL_CERT_FILE=$crt" \
    --change "ENV PIP_CERT=$crt" \
    --change "ENV REQUESTS_CA_BUNDLE=$crt" \
    --change "ENV LANG=C.UTF-8" \
    --change 'CMD ["bash"]' \
    --message "skymap_scanner base: debootstrap $suite minbase + ${packages[*]} (resources/container_base.sh)" \
    - "$ref" >/dev/null || die 1 "docker import failed"
log "made $ref in $((SECONDS - start)) s"
echo "$ref"
