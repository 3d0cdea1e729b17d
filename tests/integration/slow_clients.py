"""Slow clients, run inside the compose network (piped to `python3 -` in a
container): open N connections to HOST:PORT that trickle their request, half
of them the headers, half the body, then time one ordinary request to the
same server while they hold on. Prints one JSON line.

    python3 - HOST PORT N HOLD_SECONDS [BODY_BYTES [UPFRONT_BYTES]] < slow_clients.py

BODY_BYTES (4096 unless given) is the length the body senders announce;
they send UPFRONT_BYTES of it at once (0 unless given), then a byte a
second: a proxy that buffers only the start of a body (Apache's
mod_proxy_http prefetches 16 KiB) is past that start at once.
"""

import json
import socket
import sys
import time

host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
body_bytes = int(sys.argv[5]) if len(sys.argv) > 5 else 4096
upfront = int(sys.argv[6]) if len(sys.argv) > 6 else 0

slow = []
for i in range(count):
    sock = socket.create_connection((host, port), timeout=5)
    if i % 2:
        # Headers complete, body promised but sent a byte at a time.
        sock.sendall(
            b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % body_bytes + b"x" * upfront
        )
    else:
        # Headers never finished.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
    slow.append((i % 2, sock))
time.sleep(0.5)

probe = socket.create_connection((host, port), timeout=5)
probe.settimeout(0.2)
probe_started = time.monotonic()
probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
answer, answered_after, next_trickle = b"", None, 0.0
while time.monotonic() - probe_started < hold:
    if time.monotonic() >= next_trickle:
        for sends_body, sock in slow:
            try:
                sock.sendall(b"x" if sends_body else b"X-Slow: 1\r\n")
            except OSError:
                pass  # the server gave up on this one: fine either way
        next_trickle = time.monotonic() + 1.0
    try:
        chunk = probe.recv(65536)
    except TimeoutError:
        continue
    answer += chunk
    if not chunk or b"\r\n\r\n" in answer:
        answered_after = time.monotonic() - probe_started
        break

for _, sock in slow:
    sock.close()
print(
    json.dumps(
        {
            "slow_clients": count,
            "hold_seconds": hold,
            "body_bytes": body_bytes,
            "upfront_bytes": upfront,
            "probe_seconds": answered_after,
            "probe_status_line": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        }
    )
)
