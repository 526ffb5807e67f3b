#!/usr/bin/env bash
# Checks the monitoring files: Prometheus config, alert rules, alert rule unit tests and
# the Grafana dashboard JSON. Runs every check, then exits non-zero if any failed.
# Needs promtool (deploy/prometheus/ensure-prometheus.sh installs it) and python3.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found; run deploy/prometheus/ensure-prometheus.sh" >&2
    exit 1
fi

failed=0
run() {
    echo "+ $*"
    if ! "$@"; then
        echo "check.sh: FAILED: $*" >&2
        failed=1
    fi
}

# rule_files in prometheus.yml and alerts_test.yml are resolved relative to those files.
run promtool check config deploy/prometheus/prometheus.yml
run promtool check rules deploy/prometheus/alerts.yml
run promtool test rules deploy/prometheus/alerts_test.yml
run python3 -m json.tool deploy/grafana/loyalty-consumer.json /dev/null

if [ "$failed" -ne 0 ]; then
    echo "check.sh: some checks failed" >&2
    exit 1
fi
echo "check.sh: all monitoring checks passed"
