#!/usr/bin/env bash
# Add a worker on this machine to a running search whose master runs on another machine
# (started there with docker-compose.multihost.yml). The hpo-service image must exist here:
# `docker compose build` in a checkout, or pull it from your registry and set HPO_IMAGE.
#
#   scripts/remote-worker.sh MASTER_ADDRESS [THIS_MACHINE_ADDRESS]
#
# Environment: HPO_RUN_ID (must match the master's, default compose), HPO_NAMESERVER_PORT (9090),
# HPO_DEVICE (auto), HPO_DATASET (digits), HPO_DATA_DIR_HOST (datasets, mounted at /data),
# GPUS (for example "device=0" to give this worker one GPU; needs the NVIDIA container toolkit),
# HPO_TLS_DIR_HOST (the run's certificates copied from the master's machine, default ./tls; readable by
# uid 1000, the image's user; see docs/security.md), HPO_INSECURE=true (a master run without TLS).
set -euo pipefail
master=${1:?usage: scripts/remote-worker.sh MASTER_ADDRESS [THIS_MACHINE_ADDRESS]}
address=${2:-$(hostname -I | awk '{print $1}')}
gpu_options=()
[ -n "${GPUS:-}" ] && gpu_options=(--gpus "$GPUS")
data_dir=${HPO_DATA_DIR_HOST:-$PWD/data}
mkdir -p "$data_dir"
run_id=${HPO_RUN_ID:-compose}
tls_options=(-e HPO_INSECURE="${HPO_INSECURE:-}")
case "${HPO_INSECURE:-}" in
  1|true|yes|on) ;;
  *) tls_dir=$(cd "${HPO_TLS_DIR_HOST:-$PWD/tls}" && pwd)
     tls_options+=(-v "$tls_dir:/tls/$run_id:ro") ;;
esac
exec docker run --rm --init --network host "${gpu_options[@]}" \
  -e HPO_RUN_ID="$run_id" \
  "${tls_options[@]}" \
  -e HPO_NAMESERVER="$master:${HPO_NAMESERVER_PORT:-9090}" \
  -e HPO_ADVERTISE_HOST="$address" \
  -e HPO_DEVICE="${HPO_DEVICE:-auto}" \
  -e HPO_DATASET="${HPO_DATASET:-digits}" \
  -v "$data_dir:/data:ro" \
  "${HPO_IMAGE:-hpo-service:latest}" worker
