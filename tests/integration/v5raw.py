"""MQTT 5 packets byte by byte, for tests that check exact reason codes and
properties (paho hides some of them). Builds on mqttraw's RawClient for the
socket; parses the MQTT 5 bodies itself (mqttraw.Packet knows 3.1.1)."""
import struct

import mqttraw as R
from mqttraw import mstr, packet, varint

# property ids
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
RESPONSE_TOPIC, CORRELATION_DATA, SUBSCRIPTION_ID = 0x08, 0x09, 0x0B
SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x11, 0x12, 0x13
AUTH_METHOD, REASON_STRING = 0x15, 0x1F
RECEIVE_MAXIMUM, TOPIC_ALIAS_MAXIMUM, TOPIC_ALIAS = 0x21, 0x22, 0x23
USER, MAXIMUM_PACKET_SIZE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE = 0x26, 0x27, 0x29, 0x2A
WILL_DELAY = 0x18

_BYTE = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_U16 = {0x13, 0x21, 0x22, 0x23}
_U32 = {0x02, 0x11, 0x18, 0x27}
_STR = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BIN = {0x09, 0x16}


def props(*items):
    """props((id, value), ...) -> encoded block with its length prefix.
    USER values are (key, value) pairs; SUBSCRIPTION_ID a varint."""
    out = b""
    for pid, v in items:
        out += bytes([pid])
        if pid in _BYTE:
            out += bytes([v])
        elif pid in _U16:
            out += struct.pack("!H", v)
        elif pid in _U32:
            out += struct.pack("!I", v)
        elif pid in _STR or pid in _BIN:
            out += mstr(v)
        elif pid == USER:
            out += mstr(v[0]) + mstr(v[1])
        elif pid == SUBSCRIPTION_ID:
            out += varint(v)
        else:
            raise ValueError(pid)
    return varint(len(out)) + out


def parse_props(b):
    """Parses a property block with its length prefix: returns (list of
    (id, value), bytes used)."""
    n, i, mult = 0, 0, 1
    while True:
        d = b[i]
        n += (d & 0x7F) * mult
        mult *= 128
        i += 1
        if not d & 0x80:
            break
    end = i + n
    out = []
    while i < end:
        pid = b[i]
        i += 1
        if pid in _BYTE:
            v = b[i]; i += 1
        elif pid in _U16:
            (v,) = struct.unpack("!H", b[i:i + 2]); i += 2
        elif pid in _U32:
            (v,) = struct.unpack("!I", b[i:i + 4]); i += 4
        elif pid in _STR or pid in _BIN:
            (ln,) = struct.unpack("!H", b[i:i + 2])
            v = bytes(b[i + 2:i + 2 + ln]); i += 2 + ln
            if pid in _STR:
                v = v.decode()
        elif pid == USER:
            (ln,) = struct.unpack("!H", b[i:i + 2])
            k = bytes(b[i + 2:i + 2 + ln]).decode(); i += 2 + ln
            (ln,) = struct.unpack("!H", b[i:i + 2])
            v = (k, bytes(b[i + 2:i + 2 + ln]).decode()); i += 2 + ln
        elif pid == SUBSCRIPTION_ID:
            v, mult = 0, 1
            while True:
                d = b[i]; i += 1
                v += (d & 0x7F) * mult
                mult *= 128
                if not d & 0x80:
                    break
        else:
            raise ValueError("property 0x%02x" % pid)
        out.append((pid, v))
    return out, end


def pget(plist, pid, default=None):
    for k, v in plist:
        if k == pid:
            return v
    return default


def connect(client_id="", clean=True, keepalive=60, cprops=b"\x00", will=None,
            will_props=b"\x00"):
    """will = (topic, payload, qos, retain)."""
    f = 0x02 if clean else 0
    payload = mstr(client_id)
    if will is not None:
        wt, wp, wq, wr = will
        f |= 0x04 | (wq << 3) | (0x20 if wr else 0)
        payload += will_props + mstr(wt) + mstr(wp)
    body = mstr("MQTT") + bytes([5, f]) + struct.pack("!H", keepalive) + cprops
    return packet(R.CONNECT, 0, body + payload)


def publish(topic, payload=b"", qos=0, pid=None, retain=False, pprops=b"\x00"):
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (qos << 1) | (1 if retain else 0)
    body = mstr(topic)
    if qos:
        body += struct.pack("!H", pid)
    return packet(R.PUBLISH, flags, body + pprops + payload)


def subscribe(pid, filters, sprops=b"\x00"):
    """filters: [(filter, options byte)]."""
    body = struct.pack("!H", pid) + sprops
    for f, o in filters:
        body += mstr(f) + bytes([o])
    return packet(R.SUBSCRIBE, 2, body)


def unsubscribe(pid, filters):
    body = struct.pack("!H", pid) + b"\x00"
    for f in filters:
        body += mstr(f)
    return packet(R.UNSUBSCRIBE, 2, body)


def ack(ptype, pid, reason=None):
    body = struct.pack("!H", pid)
    if reason is not None:
        body += bytes([reason, 0])
    return packet(ptype, 2 if ptype == R.PUBREL else 0, body)


def disconnect(reason=0, dprops=b"\x00"):
    return packet(R.DISCONNECT, 0, bytes([reason]) + dprops)


class P5:
    """An MQTT 5 packet read by a RawClient: type, reason, props, and for
    PUBLISH topic/qos/pid/payload/retain, for SUBACK/UNSUBACK codes."""

    def __init__(self, p):
        self.type, self.flags, b = p.type, p.flags, p.body
        self.reason, self.props, self.pid = 0, [], None
        if self.type == R.CONNACK:
            self.session_present = bool(b[0] & 1)
            self.reason = b[1]
            self.props, _ = parse_props(b[2:])
        elif self.type == R.PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.retain = bool(self.flags & 1)
            self.dup = bool(self.flags & 8)
            (tl,) = struct.unpack("!H", b[:2])
            self.topic = bytes(b[2:2 + tl]).decode()
            i = 2 + tl
            if self.qos:
                (self.pid,) = struct.unpack("!H", b[i:i + 2])
                i += 2
            self.props, n = parse_props(b[i:])
            self.payload = bytes(b[i + n:])
        elif self.type in (R.PUBACK, R.PUBREC, R.PUBREL, R.PUBCOMP):
            (self.pid,) = struct.unpack("!H", b[:2])
            if len(b) > 2:
                self.reason = b[2]
            if len(b) > 3:
                self.props, _ = parse_props(b[3:])
        elif self.type in (R.SUBACK, R.UNSUBACK):
            (self.pid,) = struct.unpack("!H", b[:2])
            self.props, n = parse_props(b[2:])
            self.codes = list(b[2 + n:])
        elif self.type == R.DISCONNECT:
            if len(b) > 0:
                self.reason = b[0]
            if len(b) > 1:
                self.props, _ = parse_props(b[1:])

    def __repr__(self):
        return "<P5 %s reason=0x%02x props=%r>" % (R.NAMES.get(self.type), self.reason,
                                                   self.props)


class Client5(R.RawClient):
    def recv5(self, timeout=5.0):
        p = self.recv(timeout)
        return P5(p) if p is not None else None

    def expect5(self, ptype, timeout=5.0):
        p = self.recv5(timeout)
        assert p is not None, "timed out waiting for %s" % R.NAMES[ptype]
        assert p.type == ptype, "expected %s, got %r" % (R.NAMES[ptype], p)
        return p

    def connect5(self, client_id="", clean=True, keepalive=60, cprops=b"\x00", **kw):
        self.send(connect(client_id, clean, keepalive, cprops, **kw))
        return self.expect5(R.CONNACK)

    def subscribe5(self, filters, pid=1, sprops=b"\x00"):
        self.send(subscribe(pid, filters, sprops))
        return self.expect5(R.SUBACK).codes
