#!/usr/bin/env bash
# proxy-bench --setup for cluster mode: the same Ringway config with and without [cluster].
# Writes {workdir}/ringway.toml: one listener on PORT, one round-robin pool of BACKENDS, access
# log off, THREADS workers, and with MODE=cluster a [cluster] section naming ETCD (a running
# etcd, e.g. one member started by hand on 127.0.0.1:23790) under a prefix of its own.
# Run the proxy with: target/release/ringway run -c {workdir}/ringway.toml
# Usage: cluster.sh file|cluster WORKDIR PORT THREADS BACKENDS [ETCD]
set -euo pipefail
mode=$1 workdir=$2 port=$3 threads=$4 backends=$5 etcd=${6:-http://127.0.0.1:23790}
servers=$(printf '"%s", ' ${backends//,/ })
{
  printf 'workers = %s\n\n' "$threads"
  if [ "$mode" = cluster ]; then
    printf '[cluster]\netcd = ["%s"]\nprefix = "/bench-%s"\nname = "bench"\n\n' "$etcd" "$$"
  fi
  printf '[admin]\nlisten = "127.0.0.1:0"\n\n[log]\naccess = "off"\n\n'
  printf '[[listener]]\nname = "bench"\nbind = "127.0.0.1:%s"\n\n' "$port"
  printf '[[route]]\npath = "/"\npool = "b"\n\n[pool.b]\nservers = [%s]\n' "${servers%, }"
} > "$workdir/ringway.toml"
