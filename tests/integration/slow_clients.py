"""Slow clients, run inside the compose network (piped to `python3 -` in a
container): open N connections to HOST:PORT that trickle their request, half
of them the headers, half the body, then time one ordinary request to the
same server while they hold on. Prints one JSON line.

    python3 - HOST PORT N HOLD_SECONDS < slow_clients.py
"""

import json
import socket
import sys
import time

host, port, count, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

slow = []
for i in range(count):
    sock = socket.create_connection((host, port), timeout=5)
    if i % 2:
        # Headers complete, body promised but sent a byte at a time.
        sock.sendall(b"POST /work/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4096\r\n\r\n")
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
            "probe_seconds": answered_after,
            "probe_status_line": answer.split(b"\r\n", 1)[0].decode(errors="replace"),
        }
    )
)
