#!/usr/bin/env bash
# Set up pocketkube on a fresh Debian 12 machine (as root) and start a single-node cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/deps.sh
DATA_DIR=${POCKETKUBE_DATA_DIR:-/var/lib/pocketkube}
mkdir -p "$DATA_DIR"
ln -sf "$PWD/.venv/bin/pocketkube" /usr/local/bin/pocketkube
if [ -f "$DATA_DIR/server.pid" ] && kill -0 "$(cat "$DATA_DIR/server.pid")" 2>/dev/null; then
    echo "pocketkube server already running (pid $(cat "$DATA_DIR/server.pid"))"
else
    setsid nohup .venv/bin/pocketkube server --data-dir "$DATA_DIR" >"$DATA_DIR/server.log" 2>&1 </dev/null &
    echo $! >"$DATA_DIR/server.pid"
fi
export POCKETKUBE_DATA_DIR="$DATA_DIR"
for _ in $(seq 1 300); do
    if [ -f "$DATA_DIR/kubeconfig.yaml" ] && .venv/bin/pocketkube kubectl get --raw /readyz >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done
.venv/bin/pocketkube kubectl get --raw /readyz >/dev/null
for _ in $(seq 1 100); do
    .venv/bin/pocketkube kubectl get nodes 2>/dev/null | grep -q " Ready " && break
    sleep 0.2
done
.venv/bin/pocketkube kubectl get nodes
echo "pocketkube is up. Try: pocketkube kubectl get nodes   (kubeconfig: $DATA_DIR/kubeconfig.yaml)"
