#!/usr/bin/env python3
"""CPU per request of cleartext HTTP/2 (h2c, prior knowledge) through `ringway proxy`,
in interleaved rounds of several binaries (docs/benchmarks.md).

    benches/proxy-bench/h2c.py BINARY [BINARY ...]

Needs nginx and h2load (Debian's nginx and nghttp2-client; `proxy-bench` installs both).
Ringway runs with --threads 1 pinned to CPU 1; h2load and one nginx backend answering
"ok\\n" on two ports run on CPU 0. Each round runs every binary in turn: a 2 s warm-up,
then `h2load -c 64 -m 10 -D 8`; the CPU is read from /proc/PID/stat around the timed part.
"""
import os, re, statistics, subprocess, sys, tempfile, time

import ok_backends

ROUNDS, SECONDS = 5, 8
BACKENDS = (21001, 21002)
LISTEN = 21100

def ticks(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])

def main(bins):
    work = tempfile.mkdtemp(prefix='h2c-bench-')
    nginx = ok_backends.start(work, BACKENDS, cpu=0)
    url = f'http://127.0.0.1:{LISTEN}/'
    to = ','.join(f'127.0.0.1:{p}' for p in BACKENDS)
    results = {b: [] for b in bins}
    try:
        for r in range(ROUNDS):
            for b in bins:
                proxy = subprocess.Popen(['taskset', '-c', '1', b, 'proxy', '--listen', f'127.0.0.1:{LISTEN}',
                                          '--to', to, '--threads', '1'],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    time.sleep(0.5)
                    subprocess.run(['taskset', '-c', '0', 'h2load', '-c', '64', '-m', '10', '-D', '2', url],
                                   capture_output=True, timeout=60)
                    before = ticks(proxy.pid)
                    out = subprocess.run(['taskset', '-c', '0', 'h2load', '-c', '64', '-m', '10', '-D', str(SECONDS), url],
                                         capture_output=True, text=True, timeout=120).stdout
                    after = ticks(proxy.pid)
                finally:
                    proxy.terminate()
                    proxy.wait()
                done = int(re.search(r'requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded', out).group(1))
                us = (after - before) * 1e6 / os.sysconf('SC_CLK_TCK') / done
                results[b].append(us)
                print(f'round {r + 1} {b}: {done / SECONDS:,.0f} req/s, {us:.2f} us CPU per request', flush=True)
    finally:
        nginx.terminate()
        nginx.wait()
    for b in bins:
        print(f'{b}: median {statistics.median(results[b]):.2f} us per request; rounds',
              ' '.join(f'{x:.2f}' for x in results[b]))

if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
