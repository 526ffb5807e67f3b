#!/usr/bin/env bash
# Makes sure `prometheus` and `promtool` are on PATH, installing Debian's `prometheus`
# package when either is missing or broken. Idempotent: a second run does nothing.
#
# The package's maintainer scripts try to start a prometheus service. This script keeps
# that from happening (a policy-rc.d that refuses service starts, for the length of the
# install) so that the install works on machines without systemd, and afterwards stops
# any prometheus process that appeared during the install: tests start their own.
set -euo pipefail

log() { printf 'ensure-prometheus: %s\n' "$*" >&2; }

tools_work() {
    command -v prometheus >/dev/null 2>&1 &&
        command -v promtool >/dev/null 2>&1 &&
        prometheus --version >/dev/null 2>&1 &&
        promtool --version >/dev/null 2>&1
}

print_versions() {
    prometheus --version 2>&1 | head -n 1
    promtool --version 2>&1 | head -n 1
}

if tools_work; then
    log "prometheus and promtool already present"
    print_versions
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        log "not root and sudo is not available"
        exit 1
    fi
    SUDO=(sudo)
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not found: install prometheus and promtool by other means"
    exit 1
fi

# PIDs of prometheus processes that were running before the install: left alone.
prometheus_pids() {
    command -v pgrep >/dev/null 2>&1 || return 0
    pgrep -x prometheus 2>/dev/null || true
}
before_pids=" $(prometheus_pids | tr '\n' ' ') "
have_systemd=false
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    have_systemd=true
fi
service_was_active=false
if $have_systemd && systemctl is-active --quiet prometheus.service 2>/dev/null; then
    service_was_active=true
fi

# Refuse service starts during the install (invoke-rc.d and deb-systemd-invoke both
# honour policy-rc.d); any policy-rc.d already in place is put back afterwards.
POLICY=/usr/sbin/policy-rc.d
policy_backup=""
restore_policy() {
    if [ -n "$policy_backup" ]; then
        "${SUDO[@]}" mv -f "$policy_backup" "$POLICY"
    else
        "${SUDO[@]}" rm -f "$POLICY"
    fi
}
if [ -e "$POLICY" ]; then
    policy_backup="$("${SUDO[@]}" mktemp /usr/sbin/.policy-rc.d.XXXXXX)"
    "${SUDO[@]}" cp -p "$POLICY" "$policy_backup"
fi
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
"${SUDO[@]}" chmod 0755 "$POLICY"

started=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
log "installing Debian package prometheus"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends prometheus
restore_policy
trap - EXIT
log "install took $(($(date +%s) - started))s"

# Stop any daemon the install started anyway (service manager or init script).
if $have_systemd && ! $service_was_active &&
    systemctl is-active --quiet prometheus.service 2>/dev/null; then
    log "stopping prometheus.service started by the install"
    "${SUDO[@]}" systemctl stop prometheus.service >/dev/null 2>&1 || true
fi
for pid in $(prometheus_pids); do
    case "$before_pids" in
        *" $pid "*) ;;
        *)
            log "stopping prometheus daemon started by the install (pid $pid)"
            "${SUDO[@]}" kill "$pid" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                "${SUDO[@]}" kill -0 "$pid" 2>/dev/null || break
                sleep 0.5
            done
            "${SUDO[@]}" kill -9 "$pid" 2>/dev/null || true
            ;;
    esac
done

if ! tools_work; then
    log "prometheus or promtool still missing or not working after install"
    exit 1
fi
print_versions
