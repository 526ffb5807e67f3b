#!/usr/bin/env bash
# Builds the loyalty-consumer image without a Docker daemon: buildah (through `podman
# build`, chroot isolation) over
#   * $BASE_IMAGE when set, or the Dockerfile's official slim Python image when it can be
#     pulled, or else
#   * a base made here from Debian's packages (mmdebstrap: python3, python3-venv,
#     ca-certificates), imported once and kept.
# Installs what it needs (Debian's podman, buildah, runc, mmdebstrap, ...). Container
# storage and configuration live under ~/.cache/loyalty-consumer/containers, so a second
# build reuses the base and the unchanged layers.
#
# Usage: deploy/container/build-image.sh [--print-env]
#   --print-env  only print the CONTAINERS_CONF / CONTAINERS_STORAGE_CONF lines to export
#                for running podman by hand against the same storage.
# Prints, as its last line, a JSON object: image, base_image, size_bytes, build_seconds.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${LOYALTY_CACHE_DIR:-$HOME/.cache/loyalty-consumer}/containers"
DEFAULT_BASE="docker.io/library/python:3.12-slim-bookworm"
LOCAL_BASE="localhost/loyalty-consumer-base:bookworm-python3"
PYTHON="${PYTHON:-python3}"
# A pull that has failed is not tried again for a day: offline machines build at once.
PULL_RETRY_SECONDS=86400

log() { printf 'build-image: %s\n' "$*" >&2; }

write_config() {
    mkdir -p "$CACHE/storage" "$CACHE/run"
    # runc: crun (the default) fails to set rlimits on some hosts; explicit ulimits
    # because the inherited ones can be above what an unprivileged namespace may set.
    cat >"$CACHE/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    cat >"$CACHE/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "$CACHE/run"
CONF
    export CONTAINERS_CONF="$CACHE/containers.conf"
    export CONTAINERS_STORAGE_CONF="$CACHE/storage.conf"
}

if [ "${1:-}" = "--print-env" ]; then
    write_config
    echo "export CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
    exit 0
fi

ensure_packages() {
    local wanted=(podman buildah runc mmdebstrap uidmap fuse-overlayfs conmon
        containernetworking-plugins) missing=()
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2
}

make_local_base() {
    if podman image exists "$LOCAL_BASE"; then
        return 0
    fi
    log "making $LOCAL_BASE from Debian's packages (mmdebstrap)"
    local started=$SECONDS tarball="$CACHE/base-bookworm-python3.tar" partial="$CACHE/base-bookworm-python3.partial.tar"
    # No documentation, manuals or translations: an image nobody reads them in.
    mmdebstrap --variant=apt --include=python3,python3-venv,ca-certificates \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        bookworm "$partial" >&2
    rm -rf "$tarball"
    mv "$partial" "$tarball"
    podman import --change 'CMD ["python3"]' "$tarball" "$LOCAL_BASE" >&2
    rm -f "$tarball"
    log "made the base in $((SECONDS - started))s"
}

choose_base() {
    if [ -n "${BASE_IMAGE:-}" ]; then
        podman image exists "$BASE_IMAGE" || podman pull "$BASE_IMAGE" >&2
        echo "$BASE_IMAGE"
        return 0
    fi
    if podman image exists "$DEFAULT_BASE"; then
        echo "$DEFAULT_BASE"
        return 0
    fi
    local marker="$CACHE/pull-failed" now
    now=$(date +%s)
    if [ ! -f "$marker" ] || [ $((now - $(cat "$marker"))) -gt $PULL_RETRY_SECONDS ]; then
        log "trying to pull $DEFAULT_BASE"
        if timeout 30 podman pull --quiet "$DEFAULT_BASE" >&2 2>/dev/null; then
            rm -f "$marker"
            echo "$DEFAULT_BASE"
            return 0
        fi
        echo "$now" >"$marker"
        log "no registry base could be pulled; using a base made from Debian's packages"
    fi
    make_local_base
    echo "$LOCAL_BASE"
}

ensure_packages
write_config
base="$(choose_base)"

version="$(cd "$REPO" && "$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
revision="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
source_url="$(git -C "$REPO" config --get remote.origin.url 2>/dev/null || echo unknown)"
image="localhost/loyalty-consumer:$version"

# The build context holds only what the wheel is made of: no venv, caches or test files.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -a "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/consumer" "$REPO/schemas" "$context/"
find "$context" -name __pycache__ -prune -exec rm -rf {} +
# Unchanged inputs must give unchanged layers: fixed times for the copied files.
find "$context" -exec touch -h -d '2000-01-01T00:00:00Z' {} +

build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version"
    --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url")
# Networks whose egress re-signs TLS need the host's CA bundle for pip during the build.
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-}}"
if [ -n "$host_ca" ] && [ -f "$host_ca" ]; then
    build_args+=(--volume "$host_ca:/etc/ssl/certs/ca-certificates.crt:ro"
        --build-arg "PIP_CERT=/etc/ssl/certs/ca-certificates.crt")
fi

log "building $image over $base"
started=$(date +%s.%N)
podman build --isolation chroot --layers --network host \
    "${build_args[@]}" \
    --file "$REPO/deploy/container/Dockerfile" --tag "$image" "$context" >&2
finished=$(date +%s.%N)
size=$(podman image inspect --format '{{.Size}}' "$image")
log "built $image ($((size / 1000000)) MB)"
printf '{"image": "%s", "base_image": "%s", "size_bytes": %s, "build_seconds": %s}\n' \
    "$image" "$base" "$size" "$("$PYTHON" -c "print(round($finished - $started, 1))")"
