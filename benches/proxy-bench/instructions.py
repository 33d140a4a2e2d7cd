#!/usr/bin/env python3
"""User-space instructions per request of `ringway proxy`, counted by valgrind's callgrind
(docs/benchmarks.md): a figure that, unlike CPU time on a shared 2-core VM, repeats within
0.2 % from run to run, for telling apart changes of a few per cent.

    benches/proxy-bench/instructions.py [--h1] [--requests N] BINARY [BINARY ...]

Needs valgrind, nginx, h2load and curl (Debian's valgrind, nginx, nghttp2-client, curl;
installed with apt-get if missing). Each binary runs with --threads 1 under callgrind behind a
local nginx answering "ok\\n" on two ports; h2load sends 5,000 requests to warm it up, then N
(20,000 by default) over 64 connections, cleartext HTTP/2 with 10 streams each (or HTTP/1.1
with --h1). The count is of the N requests only (callgrind_control dumps between the two).
Kernel work (the socket calls) is not counted; `netwatch.py` counts those.
Run it on an otherwise idle machine: under callgrind the proxy is ~50x slower, and how many
requests each poll finds ready (so the instructions per request) depends a little on timing.
"""
import glob, os, re, shutil, subprocess, sys, tempfile, time

import ok_backends

BACKENDS = (21001, 21002)
LISTEN = 21100


def need(tool, package):
    if shutil.which(tool) is None:
        subprocess.run(['apt-get', 'install', '-y', package], check=True, capture_output=True)


def main(args):
    h1 = '--h1' in args
    args = [a for a in args if a != '--h1']
    requests = 20000
    if '--requests' in args:
        i = args.index('--requests')
        requests = int(args[i + 1])
        del args[i:i + 2]
    if not args:
        sys.exit(__doc__)
    for tool, package in [('valgrind', 'valgrind'), ('nginx', 'nginx'), ('h2load', 'nghttp2-client'),
                          ('curl', 'curl')]:
        need(tool, package)
    work = tempfile.mkdtemp(prefix='instructions-')
    nginx = ok_backends.start(work, BACKENDS)
    url = f'http://127.0.0.1:{LISTEN}/'
    to = ','.join(f'127.0.0.1:{p}' for p in BACKENDS)
    load = ['h2load', '-c', '64'] + (['--h1'] if h1 else ['-m', '10'])
    curl = ['curl', '-s', '-o', '/dev/null', '--max-time', '2'] + ([] if h1 else ['--http2-prior-knowledge'])
    try:
        for n, b in enumerate(args):
            out = os.path.join(work, f'cg.{n}')
            proxy = subprocess.Popen(['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
                                      b, 'proxy', '--listen', f'127.0.0.1:{LISTEN}', '--to', to,
                                      '--threads', '1'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                for _ in range(120):
                    if subprocess.run(curl + [url]).returncode == 0:
                        break
                    time.sleep(1)
                subprocess.run(load + ['-n', '5000', url], capture_output=True, check=True, timeout=600)
                subprocess.run(['callgrind_control', '--dump=warm', str(proxy.pid)], capture_output=True)
                done = subprocess.run(load + ['-n', str(requests), url], capture_output=True, text=True,
                                      check=True, timeout=1800).stdout
                subprocess.run(['callgrind_control', '--dump=main', str(proxy.pid)], capture_output=True)
            finally:
                proxy.terminate()
                proxy.wait()
            ok = int(re.search(r'requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded', done).group(1))
            main_dump = sorted(glob.glob(out + '.*'))[-1]
            total = int(re.search(r'^summary: (\d+)', open(main_dump).read(), re.M).group(1))
            print(f'{b}: {total / ok:,.0f} instructions per request ({ok} requests, '
                  f'{"HTTP/1.1" if h1 else "h2c"}; profile {main_dump})', flush=True)
    finally:
        nginx.terminate()
        nginx.wait()


if __name__ == '__main__':
    main(sys.argv[1:])
