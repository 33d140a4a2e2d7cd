#!/usr/bin/env bash
# proxy-bench --setup for Ringway with its operational side on: active health checks every 1 s on
# each backend, passive ejection, the admin interface (status page, API, /metrics) and its 2 s
# sampler. Writes {workdir}/ringway.toml; the proxy command is then
#   ringway run -c {workdir}/ringway.toml
# Usage: ringway-operated.sh WORKDIR PORT BACKENDS THREADS
set -euo pipefail
workdir=$1 port=$2 backends=$3 threads=$4
servers=$(echo "$backends" | sed 's/[^,][^,]*/"&"/g')
cat > "$workdir/ringway.toml" <<TOML
workers = $threads

[admin]
listen = "127.0.0.1:0"

[log]
access = "off"

[[listener]]
name = "bench"
bind = "127.0.0.1:$port"

[[route]]
path = "/"
pool = "bench"

[pool.bench]
balance = "round_robin"
servers = [$servers]
health = { path = "/", interval = "1s", timeout = "500ms", rise = 1, fall = 3, expect = "2xx" }
passive = { failures = 5, eject = "30s" }
TOML
