#!/usr/bin/env bash
# proxy-bench --setup for static files: Ringway and nginx serving the same directory.
# Writes {workdir}/www/index.html (SIZE bytes: SIZE-1 'x' and a newline, what proxy-bench's
# --body SIZE expects from GET /) and the server's config:
#   ringway  {workdir}/ringway.toml  a route "/" with static_dir = {workdir}/www;
#            run it with: target/release/ringway run -c {workdir}/ringway.toml
#   nginx    {workdir}/nginx.conf    root {workdir}/www, index index.html, sendfile on, the
#            harness's own nginx settings (keep-alive, access log off, workers = threads);
#            run it with: /usr/sbin/nginx -p {workdir}/ -c {workdir}/nginx.conf
# Both answer GET / with the directory's index.html, with ETag and Last-Modified, neither
# caching open files (nginx's default: no open_file_cache).
# Usage: static-files.sh ringway|nginx WORKDIR PORT THREADS SIZE
# SIZE is a byte count or k/m (KiB/MiB), as proxy-bench's --body takes it.
set -euo pipefail
server=$1 workdir=$2 port=$3 threads=$4 size=$5
case $size in
  *k) bytes=$(( ${size%k} * 1024 )) ;;
  *m) bytes=$(( ${size%m} * 1024 * 1024 )) ;;
  *) bytes=$size ;;
esac
mkdir -p "$workdir/www"
{ head -c $(( bytes - 1 )) /dev/zero | tr '\0' x; printf '\n'; } > "$workdir/www/index.html"
case $server in
ringway)
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
static_dir = "$workdir/www"
TOML
  ;;
nginx)
  reuseport=""
  if [ "$threads" -gt 1 ]; then reuseport=" reuseport"; fi
  temp=""
  for kind in client_body proxy fastcgi uwsgi scgi; do
    temp="$temp    ${kind}_temp_path $workdir/${kind}_temp;"$'\n'
  done
  cat > "$workdir/nginx.conf" <<NGINX
# nginx serving $workdir/www (written by benches/proxy-bench/static-files.sh)
daemon off;
worker_processes $threads;
worker_rlimit_nofile 200000;
pid $workdir/nginx.pid;
error_log $workdir/error.log warn;
events {
    worker_connections 100000;
}
http {
    access_log off;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
$temp
    server {
        listen 127.0.0.1:$port backlog=4096$reuseport;
        root $workdir/www;
        index index.html;
    }
}
NGINX
  ;;
*)
  echo "usage: $0 ringway|nginx WORKDIR PORT THREADS SIZE" >&2
  exit 2
  ;;
esac
