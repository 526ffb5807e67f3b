#!/usr/bin/env bash
# Makes the Kubernetes tool chain the deployment tests use, cached outside the repository
# under ~/.cache/loyalty-consumer/deploy-tools (a second run finds everything and does
# nothing):
#   helm, kubeconform                 go install, pinned versions
#   kube-apiserver                    built from the Go module k8s.io/kubernetes
#   etcd, docker-compose (v1)         Debian's etcd-server and docker-compose
#   KEDA's CRDs                       from the Go module github.com/kedacore/keda/v2
#   prometheus-operator's CRDs        from its Go module (ServiceMonitor, PrometheusRule)
#   JSON schemas for kubeconform      Kubernetes' (kubernetes-validate, from the venv) and
#                                     the CRDs' (converted here), all offline
# Prints, as its last line, a JSON object with the paths (read by the tests).
set -euo pipefail

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_VERSION=v1.33.13
# The staging modules (k8s.io/api, ...) are tagged v0.<minor>.<patch> for v1.<minor>.<patch>.
STAGING_VERSION=v0.${KUBERNETES_VERSION#v1.}
KEDA_VERSION=v2.21.0
PROMETHEUS_OPERATOR_VERSION=v0.85.0

HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${LOYALTY_CACHE_DIR:-$HOME/.cache/loyalty-consumer}/deploy-tools"
PYTHON="${PYTHON:-python3}"
mkdir -p "$CACHE"

log() { printf 'ensure-tools: %s\n' "$*" >&2; }

find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        log "the Go tool chain (go 1.24 or newer) is needed to build helm, kubeconform and kube-apiserver"
        exit 1
    fi
}
GO="$(find_go)"
# No VCS stamping: module builds have no repository to read it from.
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    local sudo=()
    [ "$(id -u)" -ne 0 ] && sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    # policy-rc.d keeps the packages' daemons (etcd) from being started as services.
    local policy=/usr/sbin/policy-rc.d had_policy=false
    [ -e "$policy" ] && had_policy=true
    if ! $had_policy; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 0755 "$policy"
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2 || { $had_policy || "${sudo[@]}" rm -f "$policy"; exit 1; }
    $had_policy || "${sudo[@]}" rm -f "$policy"
}

go_install() { # name module version [ldflags]
    local name=$1 module=$2 version=$3 ldflags=${4:-} dir="$CACHE/$1-$3"
    if [ -x "$dir/$name" ]; then
        return 0
    fi
    log "building $name $version (go install $module)"
    local started=$SECONDS
    mkdir -p "$dir"
    GOBIN="$dir" "$GO" install -trimpath -ldflags "-s -w $ldflags" "$module@$version" >&2
    log "built $name in $((SECONDS - started))s"
}

module_dir() { # module version -> directory of the extracted module
    "$GO" mod download -json "$1@$2" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

build_kube_apiserver() {
    local dir="$CACHE/kube-apiserver-$KUBERNETES_VERSION"
    if [ -x "$dir/kube-apiserver" ]; then
        return 0
    fi
    log "building kube-apiserver $KUBERNETES_VERSION from the Go module (several minutes)"
    local started=$SECONDS build="$dir/build"
    mkdir -p "$build"
    # k8s.io/kubernetes replaces each staging module with a path inside its own
    # repository; a module that depends on it names the published versions instead.
    local kubernetes_gomod
    kubernetes_gomod="$("$GO" mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
        "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    {
        echo "module local/kube-apiserver-build"
        echo
        grep -E '^go [0-9.]+$' "$kubernetes_gomod"
        echo
        echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
        echo
        sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/src/.*#replace \1 => \1 '"$STAGING_VERSION"'#p' \
            "$kubernetes_gomod"
    } >"$build/go.mod"
    (
        cd "$build"
        "$GO" get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBERNETES_VERSION" >&2
        "$GO" build -trimpath -ldflags "-s -w \
            -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
            -X k8s.io/component-base/version.gitMajor=1 \
            -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)" \
            -o "$dir/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver >&2
    )
    mv "$dir/kube-apiserver.partial" "$dir/kube-apiserver"
    rm -rf "$build"
    log "built kube-apiserver in $((SECONDS - started))s"
}

copy_crds() { # name module version glob...
    local name=$1 module=$2 version=$3
    shift 3
    local dir="$CACHE/crds/$name-$version"
    if [ -f "$dir/.complete" ]; then
        return 0
    fi
    log "fetching $name $version CRDs (go mod download $module)"
    local source
    source="$(module_dir "$module" "$version")"
    mkdir -p "$dir"
    for pattern in "$@"; do
        # shellcheck disable=SC2086
        cp $source/$pattern "$dir/"
    done
    chmod -R u+w "$dir"
    touch "$dir/.complete"
}


apt_install etcd-server openssl docker-compose
# What helm's own release build stamps in: its version, and the Kubernetes version it
# assumes (for kubeVersion checks) when no cluster is asked, from its client-go.
helm_ldflags() {
    local gomod minor
    gomod="$("$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
        "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
    minor="$(sed -nE 's#^[[:space:]]*k8s\.io/client-go v0\.([0-9]+)\..*#\1#p' "$gomod" | head -n 1)"
    printf '%s ' "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
}
go_install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION" "$(helm_ldflags)" &
helm_pid=$!
go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
wait "$helm_pid"
build_kube_apiserver
copy_crds keda github.com/kedacore/keda/v2 "$KEDA_VERSION" 'config/crd/bases/keda.sh_*.yaml'
# (The folder is named after the CRDs it holds: a cache made before PrometheusRule was
# added stays as it was, and a new one is made beside it.)
copy_crds prometheus-operator-monitors-rules github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION" \
    'example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml' \
    'example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml'

# JSON schemas for kubeconform: Kubernetes' kinds and the CRDs above, offline.
schemas="$CACHE/schemas/kubernetes-${KUBERNETES_VERSION%.*}-keda-$KEDA_VERSION-prometheus-operator-monitors-rules-$PROMETHEUS_OPERATOR_VERSION"
if [ ! -f "$schemas/.complete" ]; then
    rm -rf "$schemas"
    "$PYTHON" "$HERE/offline_schemas.py" "$schemas" "${KUBERNETES_VERSION%.*}.0" \
        "$CACHE"/crds/keda-"$KEDA_VERSION"/*.yaml \
        "$CACHE"/crds/prometheus-operator-monitors-rules-"$PROMETHEUS_OPERATOR_VERSION"/*.yaml >&2
    touch "$schemas/.complete"
fi

"$PYTHON" - "$CACHE" "$HELM_VERSION" "$KUBECONFORM_VERSION" "$KUBERNETES_VERSION" \
    "$KEDA_VERSION" "$PROMETHEUS_OPERATOR_VERSION" "$schemas" "$(command -v etcd || echo /usr/bin/etcd)" <<'PY'
import json, sys
cache, helm, kubeconform, kubernetes, keda, prom, schemas, etcd = sys.argv[1:]
print(json.dumps({
    "helm": f"{cache}/helm-{helm}/helm",
    "kubeconform": f"{cache}/kubeconform-{kubeconform}/kubeconform",
    "kube_apiserver": f"{cache}/kube-apiserver-{kubernetes}/kube-apiserver",
    "kubernetes_version": kubernetes,
    "etcd": etcd,
    "keda_crds": f"{cache}/crds/keda-{keda}",
    "prometheus_operator_crds": f"{cache}/crds/prometheus-operator-monitors-rules-{prom}",
    "schemas": schemas,
}))
PY
