#!/usr/bin/env python3
"""Where a proxy's CPU goes, measured beside a running proxy-bench (docs/benchmarks.md).

    benches/proxy-bench/netwatch.py NAME=REGEX [NAME=REGEX ...] &
    proxy-bench -c 64 -r 1 -d 20 --targets nginx,haproxy --proxy ringway=...

For each NAME, waits for a process whose command line matches REGEX to have used 4 s of CPU
(the timed part of its round), then:
  1. over 3 s, its user and system CPU ticks and the machine's TCP segments (nstat). Every
     request crosses four segments on loopback (client to proxy, proxy to server and back), so
     requests = IP packets sent / 4 when no pure ACKs are sent (the TcpExtTCPPureAcks count);
  2. over the next 3 s, its socket system calls (perf stat on the syscalls:sys_enter_*
     tracepoints, so perf must be installed), printed per request taking the request rate of
     step 1 (tracing slows the proxy a little, so these are a few percent low).
Example regexes: nginx='nginx: worker', haproxy='bin/haproxy', ringway='ringway proxy'.
"""
import os, re, subprocess, sys, time

CALLS = ['sendto', 'recvfrom', 'writev', 'readv', 'read', 'write', 'epoll_wait', 'epoll_ctl',
         'getsockopt', 'setsockopt', 'futex', 'sendmsg', 'recvmsg']
COUNTERS = ['IpOutRequests', 'TcpOutSegs', 'TcpExtDelayedACKs', 'TcpExtTCPPureAcks']

def ticks(pid):
    fields = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(fields[11]), int(fields[12])

def nstat():
    out = subprocess.run(['nstat', '-az'], capture_output=True, text=True).stdout
    counts = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[1].isdigit():
            counts[f[0]] = int(f[1])
    return counts

def busy(pattern):
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\0', b' ').decode()
            if re.search(pattern, cmd) and sum(ticks(pid)) > 4 * os.sysconf('SC_CLK_TCK'):
                return int(pid)
        except (OSError, ValueError):
            continue
    return None

def watch(name, pid):
    hz = os.sysconf('SC_CLK_TCK')
    net0, cpu0, t0 = nstat(), ticks(pid), time.monotonic()
    time.sleep(3)
    net1, cpu1, t1 = nstat(), ticks(pid), time.monotonic()
    net = {k: net1.get(k, 0) - net0.get(k, 0) for k in COUNTERS}
    requests = max(net['IpOutRequests'] / 4, 1)
    rate = requests / (t1 - t0)
    user, system = (cpu1[0] - cpu0[0]) / hz, (cpu1[1] - cpu0[1]) / hz
    print(f'{name}: {rate:,.0f} requests/s; CPU per request {user / requests * 1e6:.1f} us user + '
          f'{system / requests * 1e6:.1f} us system; ' + ' '.join(f'{k}={v}' for k, v in net.items()),
          flush=True)
    events = ','.join('syscalls:sys_enter_' + c for c in CALLS)
    stat = subprocess.run(['perf', 'stat', '-x,', '-e', events, '-p', str(pid), '--', 'sleep', '3'],
                          capture_output=True, text=True)
    calls = {}
    for line in stat.stderr.splitlines():
        f = line.split(',')
        if len(f) > 3 and f[0].strip().isdigit() and int(f[0]):
            calls[f[2].replace('syscalls:sys_enter_', '')] = int(f[0])
    print(f'{name}: calls per request ' + ' '.join(f'{k}={v / (rate * 3):.2f}' for k, v in calls.items()),
          flush=True)


def main(args):
    targets = dict(a.split('=', 1) for a in args)
    deadline = time.time() + 1800
    while targets and time.time() < deadline:
        for name, pattern in list(targets.items()):
            pid = busy(pattern)
            if pid:
                watch(name, pid)
                del targets[name]
        time.sleep(0.5)

if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
