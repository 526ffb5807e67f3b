#!/usr/bin/env bash
# Builds the loyalty-consumer image without a Docker daemon: buildah (through `podman
# build`, chroot isolation) over one of two bases, chosen explicitly, never by fallback:
#   --base official  the Dockerfile's Python image, pinned by digest (pulled once; a
#                    failed pull is an error)
#   --base local     a base made here from Debian's packages (mmdebstrap: python3,
#                    python3-venv, ca-certificates), imported once and kept; for
#                    machines without a container registry
# (or LOYALTY_IMAGE_BASE=official|local; --base wins). The tag says which base:
# localhost/loyalty-consumer:<version> over the official base,
# localhost/loyalty-consumer:<version>-local over the local one; the labels
# org.opencontainers.image.base.name / .base.digest name it exactly.
# Installs what it needs (Debian's podman, buildah, runc, mmdebstrap, ...). Container
# storage and configuration live under ~/.cache/loyalty-consumer/containers, so a second
# build reuses the base and the unchanged layers.
#
# Usage: deploy/container/build-image.sh [--base official|local] [--print-env]
#   --print-env  only print the CONTAINERS_CONF / CONTAINERS_STORAGE_CONF lines to export
#                for running podman by hand against the same storage.
# Prints, as its last line, a JSON object: image, base, base_image, base_digest,
# size_bytes, build_seconds.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${LOYALTY_CACHE_DIR:-$HOME/.cache/loyalty-consumer}/containers"
# The Dockerfile's default base (tag@digest) is the one source of the official base.
OFFICIAL_BASE="$(sed -nE 's/^ARG BASE_IMAGE=(.+)$/\1/p' "$REPO/deploy/container/Dockerfile")"
LOCAL_BASE="localhost/loyalty-consumer-base:bookworm-python3"
PYTHON="${PYTHON:-python3}"
BASE_KIND="${LOYALTY_IMAGE_BASE:-official}"
PRINT_ENV=false
while [ $# -gt 0 ]; do
    case "$1" in
        --base) BASE_KIND="$2"; shift 2 ;;
        --base=*) BASE_KIND="${1#--base=}"; shift ;;
        --print-env) PRINT_ENV=true; shift ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$BASE_KIND" in
    official | local) ;;
    *) echo "build-image: --base must be official or local, not '$BASE_KIND'" >&2; exit 2 ;;
esac

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

if $PRINT_ENV; then
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
    if [ "$BASE_KIND" = local ]; then
        make_local_base
        echo "$LOCAL_BASE"
        return 0
    fi
    if ! podman image exists "$OFFICIAL_BASE"; then
        log "pulling $OFFICIAL_BASE"
        if ! podman pull --quiet "$OFFICIAL_BASE" >&2; then
            log "cannot pull $OFFICIAL_BASE; on a machine without a container registry," \
                "build over a base made from Debian's packages: --base local"
            exit 1
        fi
    fi
    echo "$OFFICIAL_BASE"
}

ensure_packages
write_config
base="$(choose_base)"

version="$(cd "$REPO" && "$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
revision="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
# Never the remote URL verbatim: it can carry a token (source_url.py says why).
source_url="$("$PYTHON" "$REPO/deploy/container/source_url.py" \
    "$(git -C "$REPO" config --get remote.origin.url 2>/dev/null || true)")"
# The commit's time, not the clock's: an unchanged commit gives an unchanged label.
created="$(git -C "$REPO" log -1 --format=%cI 2>/dev/null || echo unknown)"
# podman reports the digest of the image's manifest, as a registry would serve it.
base_digest="$(podman image inspect --format '{{.Digest}}' "$base")"
if [ "$BASE_KIND" = local ]; then
    image="localhost/loyalty-consumer:$version-local"
else
    image="localhost/loyalty-consumer:$version"
fi

# The build context holds only what the wheel is made of: no venv, caches or test files.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp -a "$REPO/pyproject.toml" "$REPO/README.md" "$REPO/consumer" "$REPO/schemas" \
    "$REPO/requirements" "$context/"
find "$context" -name __pycache__ -prune -exec rm -rf {} +
# Unchanged inputs must give unchanged layers: fixed times for the copied files.
find "$context" -exec touch -h -d '2000-01-01T00:00:00Z' {} +

build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version"
    --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url"
    --build-arg "CREATED=$created" --build-arg "BASE_NAME=${base%@*}"
    --build-arg "BASE_DIGEST=$base_digest")
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
printf '{"image": "%s", "base": "%s", "base_image": "%s", "base_digest": "%s", "size_bytes": %s, "build_seconds": %s}\n' \
    "$image" "$BASE_KIND" "$base" "$base_digest" "$size" "$("$PYTHON" -c "print(round($finished - $started, 1))")"
