#!/usr/bin/env bash
# proxy-bench --setup for static files: Ringway (`static_dir`) and nginx (`root`) serving the same
# file as `/index.html` of a directory in WORKDIR, so that `GET /` answers the body the harness
# checks. The file is the first backend's answer (the size proxy-bench's --body chose).
#   ringway: --setup rs='static-files.sh ringway {workdir} {port} {backends} {threads}'
#            --proxy rs='ringway run -c {workdir}/ringway.toml'
#   nginx:   --setup ns='static-files.sh nginx {workdir} {port} {backends} {threads}'
#            --proxy ns='nginx -p {workdir} -c {workdir}/nginx.conf'
# Usage: static-files.sh ringway|nginx WORKDIR PORT BACKENDS THREADS
set -euo pipefail
kind=$1 workdir=$2 port=$3 backends=$4 threads=$5
mkdir -p "$workdir/www"
first=${backends%%,*}
curl -sf "http://$first/" -o "$workdir/www/index.html"
case "$kind" in
ringway)
  cat > "$workdir/ringway.toml" <<TOML
workers = $threads

[log]
access = "off"

[[listener]]
name = "bench"
bind = "127.0.0.1:$port"

[[route]]
path = "/"
static_dir = "$workdir/www"
TOML
  ;;
nginx)
  # As a tuned nginx serves files: sendfile, no access log, open_file_cache for the stat calls.
  cat > "$workdir/nginx.conf" <<CONF
worker_processes $threads;
daemon off;
pid $workdir/nginx.pid;
error_log $workdir/error.log;
events { worker_connections 65536; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  open_file_cache max=1000 inactive=60s;
  types { text/html html; }
  server { listen 127.0.0.1:$port; root $workdir/www; location / { } }
}
CONF
  ;;
*) echo "static-files.sh: ringway or nginx, not $kind" >&2; exit 2 ;;
esac
