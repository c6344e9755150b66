"""A tiny hand-rolled MQTT 3.1.1 client for protocol edge cases.

Builds packets byte by byte (so tests can send exactly what they mean,
malformed or not), reads and parses replies, and never acknowledges
anything on its own: the test decides every PUBACK/PUBREC/PUBREL/PUBCOMP.
Every read has a deadline; nothing here can block forever.
"""
import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8, 9, 10, 11, 12, 13, 14)

NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
         6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK",
         10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
         14: "DISCONNECT"}


class Closed(Exception):
    """The peer closed the connection (EOF or reset)."""


# --------------------------------------------------------------- encoding

def varint(n):
    """MQTT remaining-length encoding."""
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            b |= 0x80
        out.append(b)
        if not n:
            return bytes(out)


def mstr(s):
    """A length-prefixed MQTT string (bytes are sent as they are)."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return struct.pack("!H", len(s)) + s


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | (flags & 0x0F)]) + varint(len(body)) + body


def connect_packet(client_id="", clean=True, keepalive=60, will=None,
                   username=None, password=None, proto_name="MQTT", level=4,
                   flags=None):
    """will = (topic, payload, qos, retain). FLAGS overrides the computed
    connect-flags byte (to send reserved bits or inconsistent flags); the
    payload still carries only the fields given."""
    f = 0
    if clean:
        f |= 0x02
    payload = mstr(client_id)
    if will is not None:
        wt, wp, wq, wr = will
        f |= 0x04 | (wq << 3) | (0x20 if wr else 0)
        payload += mstr(wt) + mstr(wp)
    if username is not None:
        f |= 0x80
        payload += mstr(username)
    if password is not None:
        f |= 0x40
        payload += mstr(password)
    if flags is not None:
        f = flags
    body = mstr(proto_name) + bytes([level, f]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, body + payload)


def publish_packet(topic, payload=b"", qos=0, retain=False, dup=False, pid=None):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = mstr(topic)
    if qos > 0:
        body += struct.pack("!H", 1 if pid is None else pid)
    return packet(PUBLISH, flags, body + payload)


def subscribe_packet(pid, filters, flags=2):
    """filters: list of (filter, qos)."""
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += mstr(f) + bytes([q])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe_packet(pid, filters, flags=2):
    body = struct.pack("!H", pid)
    for f in filters:
        body += mstr(f)
    return packet(UNSUBSCRIBE, flags, body)


def ack_packet(ptype, pid):
    return packet(ptype, 2 if ptype == PUBREL else 0, struct.pack("!H", pid))


def pingreq_packet():
    return packet(PINGREQ, 0, b"")


def disconnect_packet():
    return packet(DISCONNECT, 0, b"")


# --------------------------------------------------------------- decoding

class Packet:
    def __init__(self, first, body):
        self.type = first >> 4
        self.flags = first & 0x0F
        self.body = body
        self.pid = None
        if self.type == PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.dup = bool(self.flags & 8)
            self.retain = bool(self.flags & 1)
            (tlen,) = struct.unpack("!H", body[:2])
            self.topic = body[2:2 + tlen].decode("utf-8")
            rest = body[2 + tlen:]
            if self.qos:
                (self.pid,) = struct.unpack("!H", rest[:2])
                rest = rest[2:]
            self.payload = bytes(rest)
        elif self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
            (self.pid,) = struct.unpack("!H", body[:2])
        elif self.type == SUBACK:
            (self.pid,) = struct.unpack("!H", body[:2])
            self.codes = list(body[2:])
        elif self.type == CONNACK:
            self.session_present = bool(body[0] & 1)
            self.rc = body[1]

    @property
    def name(self):
        return NAMES.get(self.type, str(self.type))

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " topic=%r qos=%d dup=%d retain=%d pid=%r payload=%r" % (
                self.topic, self.qos, self.dup, self.retain, self.pid,
                self.payload[:40])
        elif self.type == CONNACK:
            extra = " sp=%d rc=%d" % (self.session_present, self.rc)
        elif self.type == SUBACK:
            extra = " pid=%d codes=%r" % (self.pid, self.codes)
        elif self.pid is not None:
            extra = " pid=%d" % self.pid
        return "<%s flags=0x%x%s>" % (self.name, self.flags, extra)


class RawClient:
    """One TCP connection to the broker. Reads are buffered; each read has a
    deadline. recv() raises Closed on EOF/reset and returns None on timeout."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    # -- plumbing
    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, returning False instead of raising if the peer is gone."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with RST (no FIN handshake niceties), like a dying device."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.closed = True
            raise Closed()
        if not data:
            self.closed = True
            raise Closed()
        self.buf += data
        return True

    def _try_parse(self):
        if len(self.buf) < 2:
            return None
        mult, n, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            n += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ValueError("bad remaining length from broker")
        if len(self.buf) < i + n:
            return None
        p = Packet(self.buf[0], bytes(self.buf[i:i + n]))
        del self.buf[:i + n]
        return p

    def recv(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            p = self._try_parse()
            if p is not None:
                return p
            if self.closed:
                raise Closed()
            if not self._fill(deadline):
                return None

    def expect(self, ptype, timeout=5.0):
        p = self.recv(timeout)
        assert p is not None, "timed out waiting for %s" % NAMES[ptype]
        assert p.type == ptype, "expected %s, got %r" % (NAMES[ptype], p)
        return p

    def expect_nothing(self, timeout=1.0):
        p = self.recv(timeout)
        assert p is None, "expected nothing, got %r" % p

    def wait_closed(self, timeout=5.0):
        """True if the broker closes the connection within TIMEOUT (packets
        received meanwhile are collected in self.seen)."""
        self.seen = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                p = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                return True
            except OSError:
                return True
            if p is None:
                return False
            self.seen.append(p)

    def is_open(self, timeout=0.5):
        """Probe: PINGREQ must be answered by PINGRESP."""
        if not self.try_send(pingreq_packet()):
            return False
        try:
            p = self.recv(timeout)
        except (Closed, OSError):
            return False
        return p is not None and p.type == PINGRESP

    # -- MQTT helpers
    def connect(self, client_id="", clean=True, keepalive=60, **kw):
        self.send(connect_packet(client_id, clean, keepalive, **kw))
        return self.expect(CONNACK)

    def subscribe(self, filters, pid=1, timeout=5.0):
        if isinstance(filters, str):
            filters = [(filters, 0)]
        self.send(subscribe_packet(pid, filters))
        return self._expect_ack(SUBACK, pid, timeout).codes

    def unsubscribe(self, filters, pid=1):
        if isinstance(filters, str):
            filters = [filters]
        self.send(unsubscribe_packet(pid, filters))
        return self._expect_ack(UNSUBACK, pid)

    def publish(self, topic, payload=b"", qos=0, retain=False, dup=False, pid=None):
        """Sends a PUBLISH and completes the flow for QoS 1/2 (waiting for
        PUBACK, or PUBREC then PUBREL then PUBCOMP). Packets of other types
        arriving meanwhile are kept in self.pending."""
        if qos and pid is None:
            pid = 1
        self.send(publish_packet(topic, payload, qos, retain, dup, pid))
        if qos == 1:
            self._expect_ack(PUBACK, pid)
        elif qos == 2:
            self._expect_ack(PUBREC, pid)
            self.send(ack_packet(PUBREL, pid))
            self._expect_ack(PUBCOMP, pid)

    def _expect_ack(self, ptype, pid, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            assert p is not None, "timed out waiting for %s" % NAMES[ptype]
            if p.type == ptype and p.pid == pid:
                return p
            assert p.type == PUBLISH, "expected %s, got %r" % (NAMES[ptype], p)
            self.pending = getattr(self, "pending", []) + [p]

    def recv_publishes(self, count, timeout=5.0, ack=True):
        """Collects COUNT PUBLISH packets (acking QoS 1 with PUBACK and QoS 2
        with the full PUBREC/PUBREL/PUBCOMP flow when ACK). Stops at the
        deadline; returns what arrived."""
        out = list(getattr(self, "pending", []))
        self.pending = []
        deadline = time.monotonic() + timeout
        awaiting_pubrel = set()
        while len(out) < count or awaiting_pubrel:
            p = self.recv(max(0.0, deadline - time.monotonic()))
            if p is None:
                break
            if p.type == PUBREL:
                awaiting_pubrel.discard(p.pid)
                if ack:
                    self.send(ack_packet(PUBCOMP, p.pid))
                continue
            if p.type == PUBCOMP or p.type == PINGRESP:
                continue
            assert p.type == PUBLISH, "unexpected %r" % p
            out.append(p)
            if ack and p.qos == 1:
                self.send(ack_packet(PUBACK, p.pid))
            elif ack and p.qos == 2:
                self.send(ack_packet(PUBREC, p.pid))
                awaiting_pubrel.add(p.pid)
        return out

    def recv_then_quiet(self, count, timeout=5.0, quiet=1.0, ack=True):
        """COUNT PUBLISHes (waiting up to TIMEOUT), then whatever else
        arrives within QUIET seconds more, so a test can assert the exact
        list without racing a slow machine."""
        out = self.recv_publishes(count, timeout, ack)
        if len(out) == count:
            out += self.recv_publishes(1000, quiet, ack)
        return out

    def recv_until_topic(self, topic, timeout=5.0, ack=True):
        """Collects PUBLISHes until one on TOPIC (a sentinel the test
        published last) arrives; returns those before it. Fails on timeout."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            got = self.recv_publishes(1, max(0.0, deadline - time.monotonic()), ack)
            assert got, "sentinel %r not received; got %r" % (topic, out)
            if got[0].topic == topic:
                self.pending = got[1:]
                return out
            out += got

    def disconnect(self):
        self.try_send(disconnect_packet())
        self.close()
