#!/usr/bin/env python3
"""The AMQP tap's own CPU per forwarded byte, without broker or clients (BENCHMARKS.md section 6).

A sender pushes the AMQP 0-9-1 protocol header and then body frames of FRAME_BYTES through each
given release dwell-sidecar's tap to a sink that is its upstream; every byte is checked to arrive;
the sidecar's utime + stime (/proc/<pid>/stat) per GiB forwarded is printed, median of 3 runs in
alternating order. Usage: bench/tap_micro.py FRAME_BYTES MIB SIDECAR_BINARY...
"""
import os, socket, subprocess, sys, threading, time, struct
TICK = os.sysconf('SC_CLK_TCK')
def cpu(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK
def free_port():
    s = socket.socket(); s.bind(('127.0.0.1', 0)); p = s.getsockname()[1]; s.close(); return p
def run(binary, body, total):
    sink = socket.socket(); sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sink.bind(('127.0.0.1', 0)); sink.listen(1); sport = sink.getsockname()[1]
    tport = free_port()
    p = subprocess.Popen([binary, '--aggregator', 'http://127.0.0.1:9', '--tap-listen', f'127.0.0.1:{tport}',
        '--tap-upstream', f'amqp://127.0.0.1:{sport}', '--telemetry-addr', 'off', '--pod-name', 'm-0',
        '--pod-namespace', 'm'], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if 'dwell-sidecar started' in line: break
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    got = [0]
    def drain():
        c, _ = sink.accept(); buf = bytearray(1 << 20)
        while True:
            n = c.recv_into(buf)
            if n == 0: break
            got[0] += n
        c.close()
    t = threading.Thread(target=drain); t.start()
    frame = struct.pack('>BHI', 3, 1, body) + b'\x5a' * body + b'\xce'
    chunk = frame * max(1, (1 << 20) // len(frame))
    s = socket.create_connection(('127.0.0.1', tport))
    s.sendall(b'AMQP\x00\x00\x09\x01')
    c0 = cpu(p.pid); t0 = time.time(); sent = 8
    while sent < total:
        s.sendall(chunk); sent += len(chunk)
    s.shutdown(socket.SHUT_WR); t.join(); secs = time.time() - t0; c1 = cpu(p.pid)
    s.close(); p.terminate(); p.wait()
    assert got[0] == sent, (got[0], sent)
    return (c1 - c0) / (sent / 2**30), sent / secs / 2**20
body = int(sys.argv[1]); total = int(sys.argv[2]) << 20; bins = sys.argv[3:]
res = {b: [] for b in bins}
for r in range(3):
    for b in (bins if r % 2 == 0 else bins[::-1]):
        res[b].append(run(b, body, total))
for b in bins:
    cs = sorted(x[0] for x in res[b]); ms = sorted(x[1] for x in res[b])
    print(f'{body} B frames, {b}: CPU s per GiB median {cs[1]:.2f} (runs {", ".join(f"{x[0]:.2f}" for x in res[b])}); MiB/s median {ms[1]:.0f}')
