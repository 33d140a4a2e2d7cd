"""The backends of h2c.py and instructions.py: one nginx answering "ok\\n" on each port."""
import os, subprocess, time


def start(work, ports, cpu=None):
    """Starts nginx in the directory `work` listening on 127.0.0.1 at `ports` (pinned to `cpu` if
    given); returns the process once it has had a second to start."""
    servers = ''.join(
        f'  server {{ listen 127.0.0.1:{p}; location / {{ add_header X-Backend b{i}; return 200 "ok\\n"; }} }}\n'
        for i, p in enumerate(ports, 1))
    conf = os.path.join(work, 'nginx.conf')
    with open(conf, 'w') as f:
        f.write(f'worker_processes 1;\ndaemon off;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n'
                'events { worker_connections 4096; }\n'
                f'http {{\n  access_log off;\n  keepalive_requests 1000000;\n{servers}}}\n')
    pin = ['taskset', '-c', str(cpu)] if cpu is not None else []
    nginx = subprocess.Popen(pin + ['nginx', '-c', conf, '-p', work],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    return nginx
