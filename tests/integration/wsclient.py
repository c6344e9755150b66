"""A hand-written WebSocket client for the tests (RFC 6455, client side):
the HTTP Upgrade, masked frames built byte by byte so a test can split an
MQTT packet across frames and a frame across TCP writes, and a reader of
the server's (unmasked) frames. Optionally over TLS."""
import base64
import hashlib
import os
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def frame(opcode, payload, fin=True, mask=True):
    """One client frame (masked unless MASK is False)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class WsClient:
    def __init__(self, port, protocol="mqtt", ssl_context=None, timeout=5.0,
                 extra_headers=(), upgrade=True):
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            s = ssl_context.wrap_socket(s, server_hostname="localhost")
        self.sock = s
        self.buf = b""
        self.status = None
        self.headers = {}
        self.key = base64.b64encode(os.urandom(16)).decode()
        if upgrade:
            self.handshake(protocol, extra_headers)

    def request(self, protocol="mqtt", extra_headers=()):
        lines = ["GET /mqtt HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + self.key,
                 "Sec-WebSocket-Version: 13"]
        if protocol:
            lines.append("Sec-WebSocket-Protocol: " + protocol)
        lines += list(extra_headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def handshake(self, protocol="mqtt", extra_headers=()):
        self.sock.sendall(self.request(protocol, extra_headers))
        return self.read_response()

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(4096)
            if not d:
                raise ConnectionError("closed during the handshake: %r" % self.buf)
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        return self.status

    def accept_ok(self):
        want = base64.b64encode(hashlib.sha1(self.key.encode() + GUID).digest()).decode()
        return self.headers.get("sec-websocket-accept") == want

    def send(self, data):
        self.sock.sendall(data)

    def send_binary(self, payload):
        self.sock.sendall(frame(OP_BINARY, payload))

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d

    def recv_frame(self, timeout=5.0):
        """(fin, opcode, payload) of the next server frame; server frames
        must not be masked."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "server frame is masked"
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        self._need(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_mqtt(self, timeout=5.0):
        """The next whole MQTT packet from binary frames (which may hold
        several packets or part of one)."""
        deadline = time.monotonic() + timeout
        if not hasattr(self, "mq"):
            self.mq = b""
        while True:
            pkt = _one_packet(self.mq)
            if pkt:
                self.mq = self.mq[len(pkt):]
                return pkt
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            assert op in (OP_BINARY, OP_CONT), "unexpected opcode %d" % op
            self.mq += payload

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def _one_packet(b):
    if len(b) < 2:
        return None
    n, mult, i = 0, 1, 1
    while True:
        if i >= len(b):
            return None
        n += (b[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not (b[i - 1] & 0x80):
            break
    return b[:i + n] if len(b) >= i + n else None
