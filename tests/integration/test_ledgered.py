"""Ledgered topics end to end (issue 6 items 1-3, issue 5 item 4): a real
ledgermqd with `ledger_topic` policies, devices registered offline with the
CLI on its data dir (operator_key in the config), envelopes built by
`ledgermq sign` and by an independent Python builder (cbor2 + PyNaCl,
written from RFC 9052 §4.2/§4.4), clients in MQTT 5 (raw packets for exact
reason codes, paho for the v5 user property) and 3.1.1 (paho).

After the broker stops, the log is checked offline with the CLI: `audit`
passes and the records are what was acknowledged, nothing more."""
import base64
import hashlib
import os
import socket
import struct
import subprocess
import threading
import time

import cbor2
import nacl.signing
import pytest

import mqttraw as R
import v5raw as V
from conftest import BUILD_DIR, IS_MOSQUITTO, PahoClient, wait_for

import paho.mqtt.client as mqtt

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")

pytestmark = [
    pytest.mark.skipif(IS_MOSQUITTO, reason="ledgered topics are ledgermq's"),
    pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built"),
]


def cli(*args, input=None, check=0):
    cmd = [LEDGERMQ] + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=120)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def _asan():
    p = subprocess.run(["ldd", os.path.join(BUILD_DIR, "ledgermqd")], capture_output=True)
    return b"libasan" in p.stdout


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- envelopes

def py_envelope(sk, kid, seq, t_ms, payload):
    """RFC 9052 COSE_Sign1 (tag 18), alg EdDSA, written from the RFC: the
    signature is over Sig_structure ["Signature1", protected, h'', payload]
    with the protected header as the exact bytes sent."""
    prot = cbor2.dumps({1: -8, 4: kid.encode(), -65537: seq, -65538: t_ms}, canonical=True)
    tbs = cbor2.dumps(["Signature1", prot, b"", payload])
    sig = sk.sign(tbs).signature
    return cbor2.dumps(cbor2.CBORTag(18, [prot, {}, payload, sig]), canonical=True)


class Device:
    def __init__(self, tmp, name):
        self.key = tmp / ("%s.key" % name)
        p = cli("device", "keygen", "--out", self.key)
        lines = dict(l.split(": ", 1) for l in p.stdout.decode().splitlines())
        self.id = lines["id"]
        seed = None
        for line in open(self.key).read().splitlines():
            if line.startswith("seed "):
                seed = base64.b64decode(line[5:])
        self.sk = nacl.signing.SigningKey(seed)

    def c_envelope(self, seq, payload, t=None):
        """Built by `ledgermq sign`."""
        args = ["sign", "--key", self.key, "--seq", seq]
        if t is not None:
            args += ["--time", t]
        return cli(*args, input=payload).stdout

    def py_envelope(self, seq, payload, t=None):
        return py_envelope(self.sk, self.id, seq, now_ms() if t is None else t, payload)


class Node:
    """A broker with ledgered topics and registered devices."""

    def __init__(self, broker_factory, tmp, topics, config=None, devices=("d1",),
                 revoked=(), unregistered=("stranger",)):
        cfg = {"ledger_batch_ms": 5, "sys_interval": 1}
        cfg.update(config or {})
        self.tmp = tmp
        opkey = tmp / "op.key"
        self.vkey = cli("operator", "keygen", "--out", opkey, "--name", "ops").stdout.decode().strip()
        lines = ["operator_key %s" % self.vkey] + ["ledger_topic %s" % t for t in topics]
        self.b = broker_factory(config=cfg, start=False, extra_lines=lines)
        self.data = self.b.data_dir
        self.dev = {}
        for name in list(devices) + list(revoked):
            d = Device(tmp, name)
            cli("-d", self.data, "device", "register", "--operator-key", opkey, "--key", d.key,
                "--name", name, "--trust", self.vkey)
            self.dev[name] = d
        for name in revoked:
            cli("-d", self.data, "device", "revoke", "--operator-key", opkey, "--id",
                self.dev[name].id, "--reason", "test", "--trust", self.vkey)
        for name in unregistered:
            self.dev[name] = Device(tmp, name)
        self.base = self.size()
        self.b.start()
        self.port = self.b.port

    def size(self):
        if not os.path.exists(os.path.join(self.data, "ledger")):
            return 0
        p = cli("-d", self.data, "log", "info")
        for line in p.stdout.decode().splitlines():
            if line.startswith("size: "):
                return int(line[6:])
        return 0

    def stop_and_audit(self, decode=True):
        assert self.b.stop() == 0, self.b.log()
        p = cli("-d", self.data, "audit")
        assert b"audit ok" in p.stdout
        return self.records() if decode else self.size() - self.base

    def records(self):
        """The message records appended since the start, decoded."""
        out = []
        for i in range(self.base, self.size()):
            raw = bytes.fromhex(cli("-d", self.data, "log", "get", i, "--raw").stdout.decode().strip())
            out.append((i, cbor2.loads(raw)))
        return out

    def v5(self, client_id):
        c = V.Client5(self.port)
        ca = c.connect5(client_id)
        assert ca.reason == 0
        return c


def segment_records(data):
    """Every committed record of the ledger, decoded, read straight from
    its segments (docs/FORMATS.md "Segments and frames"): much faster than
    one `ledgermq log get` per record, for tests that check thousands (call
    it after `ledgermq audit` passed)."""
    d = os.path.join(data, "ledger")
    out = []
    for name in sorted(f for f in os.listdir(d) if f.startswith("seg-")):
        b = open(os.path.join(d, name), "rb").read()
        off, batch = 16, []
        while off + 12 <= len(b):
            n, typ = struct.unpack_from("<IB", b, off)
            if off + 12 + n > len(b):
                break
            if typ == 1:
                batch.append(b[off + 12:off + 12 + n])
            elif typ == 2:
                out += batch
                batch = []
            off += 12 + n
    return [cbor2.loads(r) for r in out]


def v5_publish(c, topic, payload, qos=1, pid=1, dup=False):
    """MQTT 5 PUBLISH (DUP flag settable)."""
    body = R.mstr(topic)
    if qos:
        body += struct.pack("!H", pid)
    c.send(R.packet(R.PUBLISH, (qos << 1) | (8 if dup else 0), body + b"\x00" + payload))


def expect_ack(c, ptype=R.PUBACK, timeout=10.0):
    p = c.expect5(ptype, timeout)
    return p.reason, V.pget(p.props, V.REASON_STRING)


SIGNED = ("sig/# signed", "late/# signed late_uploads", "att/# attested")


@pytest.fixture
def node(broker_factory, tmp_path):
    return Node(broker_factory, tmp_path, SIGNED, devices=("d1", "d2"), revoked=("gone",))


# ------------------------------------------------------------------ accepted

def test_signed_accepted_after_commit(node):
    """Envelopes from `ledgermq sign` and from the Python builder: PUBACK 0
    after the commit; a v5 subscriber gets the envelope with user property
    ledger-index; a 3.1.1 subscriber the plain message; the record holds the
    device, its sequence and time, the inner payload and the envelope."""
    d1, d2 = node.dev["d1"], node.dev["d2"]
    sub5 = node.v5("sub5")
    assert sub5.subscribe5([("sig/#", 1)]) == [1]
    sub3 = PahoClient(node.port, client_id="sub3")
    sub3.subscribe("sig/#", 1)
    pub = node.v5("pub")
    envs = [d1.c_envelope(1, b'{"kwh":1}'), d2.py_envelope(7, b'{"kwh":2}'),
            d1.py_envelope(2, b'{"kwh":3}')]
    for i, env in enumerate(envs):
        v5_publish(pub, "sig/meter", env, qos=1, pid=10 + i)
    for i in range(3):
        p = pub.expect5(R.PUBACK)
        assert (p.pid, p.reason) == (10 + i, 0)
    got = [sub5.expect5(R.PUBLISH) for _ in range(3)]
    assert [g.payload for g in got] == envs
    idx = [int(V.pget(g.props, V.USER)[1]) for g in got]
    assert [V.pget(g.props, V.USER)[0] for g in got] == ["ledger-index"] * 3
    assert idx == [node.base, node.base + 1, node.base + 2]
    m3 = sub3.get_n(3)
    assert [m.payload for m in m3] == envs
    sub3.disconnect()
    recs = node.stop_and_audit()
    assert [i for i, _ in recs] == idx
    for (i, r), dev, seq, inner, env in zip(recs, (d1, d2, d1), (1, 7, 2),
                                            (b'{"kwh":1}', b'{"kwh":2}', b'{"kwh":3}'), envs):
        assert r[0] == 1 and r[2] == "sig/meter" and r[3] == inner
        assert r[5] == dev.id and r[6] == "pub" and r[7] == seq
        assert abs(r[8] - now_ms()) < 600000 and r[11] == env


def test_attested_paho_v5_and_v311(node):
    """Attested topics take any payload; the record names the publisher
    (client id for an anonymous listener) and the broker time; paho v5
    subscribers see ledger-index."""
    got = []
    ev = threading.Event()
    sub = mqtt.Client(client_id="psub", protocol=mqtt.MQTTv5)

    def on_message(c, u, m):
        got.append((m.payload, dict(m.properties.UserProperty)))
        if len(got) == 2:
            ev.set()

    sub.on_message = on_message
    sub.connect("127.0.0.1", node.port)
    sub.loop_start()
    try:
        r = sub.subscribe("att/#", qos=1)
        assert r[0] == 0
        time.sleep(0.3)
        p3 = PahoClient(node.port, client_id="p311")
        p3.publish("att/a", b"hello from 3.1.1", qos=1)
        p3.disconnect()
        p5 = mqtt.Client(client_id="p5", protocol=mqtt.MQTTv5)
        p5.connect("127.0.0.1", node.port)
        p5.loop_start()
        p5.publish("att/b", b"hello from 5", qos=1).wait_for_publish(10)
        p5.disconnect()
        p5.loop_stop()
        assert ev.wait(10)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert got[0][0] == b"hello from 3.1.1" and got[1][0] == b"hello from 5"
    assert int(got[0][1]["ledger-index"]) == node.base
    assert int(got[1][1]["ledger-index"]) == node.base + 1
    recs = node.stop_and_audit()
    assert [(r[2], r[3], r[5], r[6]) for _, r in recs] == [
        ("att/a", b"hello from 3.1.1", "p311", "p311"), ("att/b", b"hello from 5", "p5", "p5")]
    assert all(7 not in r and 11 not in r for _, r in recs)


def test_plain_topics_untouched(node):
    """A topic no policy matches is plain MQTT: no record, no property."""
    sub = node.v5("s")
    sub.subscribe5([("plain/#", 1)])
    pub = node.v5("p")
    v5_publish(pub, "plain/x", b"not ledgered", qos=1, pid=3)
    assert expect_ack(pub)[0] == 0
    m = sub.expect5(R.PUBLISH)
    assert m.payload == b"not ledgered" and V.pget(m.props, V.USER) is None
    assert node.stop_and_audit() == []


def test_no_delivery_before_commit(broker_factory, tmp_path):
    """With a long batch time, the subscriber has nothing until the
    publisher's PUBACK has come: delivery follows the commit."""
    n = Node(broker_factory, tmp_path, ("att/# attested",), config={"ledger_batch_ms": 1500})
    sub = n.v5("s")
    sub.subscribe5([("att/#", 0)])
    pub = n.v5("p")
    v5_publish(pub, "att/x", b"wait for it", qos=1, pid=9)
    sub.expect_nothing(0.5)
    assert expect_ack(pub)[0] == 0
    m = sub.expect5(R.PUBLISH)
    assert m.payload == b"wait for it"
    assert len(n.stop_and_audit()) == 1


def test_qos0_and_qos2_recorded(node):
    """QoS 0 is recorded too (no ack to wait for); QoS 2 gets PUBREC after
    the commit, then PUBCOMP for PUBREL; a resent QoS 2 PUBLISH before
    PUBREL is acknowledged again, not recorded twice."""
    d1 = node.dev["d1"]
    sub = node.v5("s")
    sub.subscribe5([("#", 2)])
    pub = node.v5("p")
    v5_publish(pub, "sig/q0", d1.py_envelope(1, b"zero"), qos=0)
    v5_publish(pub, "att/q2", b"two", qos=2, pid=5)
    assert expect_ack(pub, R.PUBREC)[0] == 0
    v5_publish(pub, "att/q2", b"two", qos=2, pid=5, dup=True)
    assert expect_ack(pub, R.PUBREC)[0] == 0
    pub.send(V.ack(R.PUBREL, 5))
    assert pub.expect5(R.PUBCOMP).reason == 0
    got = [sub.expect5(R.PUBLISH) for _ in range(2)]
    assert sorted(g.topic for g in got) == ["att/q2", "sig/q0"]
    sub.expect_nothing(0.3)
    recs = node.stop_and_audit()
    assert [(r[2], r.get(3)) for _, r in recs] == [("sig/q0", b"zero"), ("att/q2", b"two")]


# ------------------------------------------------------------------ refused

def test_refusals_v5_exact_codes(node):
    """Each refusal: its reason code and reason string, not routed, not
    recorded, one log line naming client, device, topic and reason."""
    d1, gone, stranger = node.dev["d1"], node.dev["gone"], node.dev["stranger"]
    sub = node.v5("watcher")
    sub.subscribe5([("#", 1)])
    pub = node.v5("pub")
    good = d1.py_envelope(10, b"ok")
    forged = bytearray(d1.py_envelope(11, b"forged"))
    forged[-1] ^= 1
    cases = [
        ("sig/x", bytes(forged), 0x87, "bad signature"),
        ("sig/x", stranger.py_envelope(1, b"x"), 0x87, "unknown device"),
        ("sig/x", gone.py_envelope(1, b"x"), 0x87, "revoked device"),
        ("sig/x", b"\xd2\x84garbage", 0x99, "malformed COSE_Sign1 envelope"),
        ("sig/x", b"plain text", 0x99, "malformed COSE_Sign1 envelope"),
        ("sig/x", d1.py_envelope(12, b"old", t=now_ms() - 3600 * 1000), 0x83, "clock skew"),
        ("sig/x", d1.py_envelope(13, b"future", t=now_ms() + 3600 * 1000), 0x83, "clock skew"),
        ("sig/x", good, 0, None),
        ("sig/x", good, 0x83, "replayed or out-of-order sequence number"),
        ("sig/x", d1.py_envelope(9, b"older"), 0x83, "replayed or out-of-order sequence number"),
        ("sig/x", d1.c_envelope(10, b"same seq"), 0x83, "replayed or out-of-order sequence number"),
        ("late/x", d1.py_envelope(20, b"late", t=now_ms() - 30 * 86400 * 1000), 0, None),
    ]
    for i, (topic, payload, code, reason) in enumerate(cases):
        v5_publish(pub, topic, payload, qos=1, pid=100 + i)
        p = pub.expect5(R.PUBACK)
        assert p.pid == 100 + i
        assert (p.reason, V.pget(p.props, V.REASON_STRING)) == (code, reason), (i, p)
    got = [sub.expect5(R.PUBLISH) for _ in range(2)]
    assert [g.payload for g in got] == [good, cases[-1][1]]
    sub.expect_nothing(0.3)
    log = node.b.log()
    assert log.count("ledger: refused PUBLISH from client pub") == 10
    assert "(device %s) on sig/x: revoked device" % gone.id in log
    recs = node.stop_and_audit()
    assert [(r[7], r[3]) for _, r in recs] == [(10, b"ok"), (20, b"late")]


def test_refusal_v311_disconnects(node):
    """MQTT 3.1.1 has no negative ack: the publisher is disconnected."""
    c = R.RawClient(node.port)
    c.connect("p311")
    forged = bytearray(node.dev["d1"].py_envelope(1, b"x"))
    forged[-2] ^= 0x40
    c.send(R.publish_packet("sig/x", bytes(forged), qos=1, pid=1))
    c.wait_closed()
    log = node.b.log()
    assert "refused PUBLISH from client p311" in log and "bad signature" in log
    assert node.stop_and_audit() == []


def test_wrong_topic_mode_is_not_a_bypass(node):
    """A valid envelope published to a plain topic stays plain; an attested
    payload on a signed topic is refused (0x99)."""
    pub = node.v5("p")
    v5_publish(pub, "sig/x", b'{"not":"an envelope"}', qos=1, pid=1)
    assert expect_ack(pub)[0] == 0x99
    assert node.stop_and_audit() == []


def test_dup_resend_gets_existing_index(node):
    """A DUP resend of a committed envelope gets its PUBACK, not a second
    record nor a replay refusal; the same bytes without DUP are a replay."""
    env = node.dev["d1"].py_envelope(42, b"once")
    sub = node.v5("s")
    sub.subscribe5([("sig/#", 1)])
    pub = node.v5("p")
    v5_publish(pub, "sig/x", env, qos=1, pid=7)
    assert expect_ack(pub)[0] == 0
    v5_publish(pub, "sig/x", env, qos=1, pid=7, dup=True)
    assert expect_ack(pub)[0] == 0
    v5_publish(pub, "sig/x", env, qos=1, pid=8)
    assert expect_ack(pub)[0] == 0x83
    assert sub.expect5(R.PUBLISH).payload == env
    sub.expect_nothing(0.3)
    recs = node.stop_and_audit()
    assert len(recs) == 1 and recs[0][1][7] == 42


def test_private_payload_store(broker_factory, tmp_path):
    """`private`: the record holds SHA-256(salt || payload), not the
    payload; subscribers still get the payload; the payload store exists."""
    n = Node(broker_factory, tmp_path, ("priv/# attested private",))
    sub = n.v5("s")
    sub.subscribe5([("priv/#", 1)])
    pub = n.v5("p")
    v5_publish(pub, "priv/x", b"secret reading", qos=1, pid=1)
    assert expect_ack(pub)[0] == 0
    assert sub.expect5(R.PUBLISH).payload == b"secret reading"
    recs = n.stop_and_audit()
    (_, r), = recs
    assert 3 not in r and len(r[4]) == 32
    assert os.path.exists(os.path.join(n.data, "payloads", "data.mdb"))


def test_config_errors(tmp_path):
    """Bad ledger_topic lines stop the start with FILE:LINE."""
    ledgermqd = os.path.join(BUILD_DIR, "ledgermqd")
    for line, why in [("ledger_topic a/# sealed", "signed or attested"),
                      ("ledger_topic a/#/b signed", "not a valid topic filter"),
                      ("ledger_topic a/# attested late_uploads", "signed topics only"),
                      ("ledger_topic a/+x signed", "not a valid topic filter"),
                      ("ledger_topic a/#", "takes FILTER")]:
        conf = tmp_path / "bad.conf"
        conf.write_text("data_dir %s\nledger_topic ok/# signed\n%s\n" % (tmp_path / "d", line))
        p = subprocess.run([ledgermqd, "-c", str(conf)], capture_output=True, timeout=10)
        assert p.returncode == 1
        assert ("%s:3:" % conf).encode() in p.stderr and why.encode() in p.stderr, p.stderr


# ------------------------------------------------------------- durability

def test_kill9_every_acked_message_in_log(broker_factory, tmp_path):
    """kill -9 during a stream of QoS 1 ledgered messages: after a restart,
    every PUBACKed message is in the log (audit passes), none twice."""
    n = Node(broker_factory, tmp_path, ("att/# attested", "sig/# signed"),
             config={"ledger_batch_ms": 2})
    d1 = n.dev["d1"]
    acked = []
    stop = threading.Event()

    def stream(topic, make):
        c = V.Client5(n.port)
        c.connect5("k-" + topic)
        sent = {}
        i = 0
        try:
            while not stop.is_set() and i < 5000:
                pid = i % 60000 + 1
                payload = make(i)
                v5_publish(c, topic, payload, qos=1, pid=pid)
                sent[pid] = payload
                i += 1
                while len(sent) > 20:
                    p = c.recv5(5)
                    if p is None:
                        return
                    if p.type == R.PUBACK and p.reason == 0:
                        acked.append(sent.pop(p.pid))
        except (OSError, R.Closed, AssertionError):
            return

    envs = [d1.py_envelope(k + 1, b"s%d" % k) for k in range(3000)]
    ts = [threading.Thread(target=stream, args=("att/k", lambda i: b"a%d" % i)),
          threading.Thread(target=stream, args=("sig/k", lambda i: envs[i % len(envs)]))]
    for t in ts:
        t.start()
    assert wait_for(lambda: len(acked) > 300, 20)
    n.b.kill()
    stop.set()
    for t in ts:
        t.join(10)
    n.b.start()
    recs = n.stop_and_audit()
    att = [r[3] for _, r in recs if r[2] == "att/k"]
    sig = [r[11] for _, r in recs if r[2] == "sig/k"]
    assert len(att) == len(set(att)) and len(sig) == len(set(sig))
    logged = set(att) | set(sig)
    missing = [a for a in acked if a not in logged]
    assert not missing, "%d acked messages not in the log" % len(missing)


# -------------------------------------------------------------- backpressure

def test_burst_backpressure(broker_factory, tmp_path):
    """Many connections burst QoS 1 messages onto an attested topic with a
    tiny ingest queue: the broker pauses them instead of growing; every
    acked message is in the log; a plain topic is served meanwhile; RSS
    stays bounded."""
    n = Node(broker_factory, tmp_path, ("burst/# attested",),
             config={"ledger_queue_messages": 64, "ledger_queue_bytes": 262144,
                     "ledger_batch_ms": 20, "ledger_batch_max": 32})
    N, M = 40, 250
    acked = [0] * N
    payload = b"x" * 2048

    def blast(k):
        s = socket.create_connection(("127.0.0.1", n.port), timeout=20)
        s.sendall(R.connect_packet("b%d" % k))
        buf = b""
        pkts = b"".join(R.publish_packet("burst/%d" % k, payload + b"%d/%d" % (k, i), qos=1,
                                         pid=i + 1) for i in range(M))
        s.sendall(pkts)
        try:
            while acked[k] < M:
                data = s.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    if buf[0] >> 4 == R.PUBACK and len(buf) >= 4:
                        acked[k] += 1
                        buf = buf[4:]
                    elif buf[0] >> 4 == R.CONNACK and len(buf) >= 4:
                        buf = buf[4:]
                    else:
                        break
        except OSError:
            pass
        s.close()

    rss0 = n.b.rss_kb()
    ts = [threading.Thread(target=blast, args=(k,)) for k in range(N)]
    for t in ts:
        t.start()
    # plain traffic is served while the burst is queued
    plain = V.Client5(n.port)
    plain.connect5("plain")
    plain.subscribe5([("plain/t", 1)])
    for i in range(5):
        v5_publish(plain, "plain/t", b"p%d" % i, qos=1, pid=i + 1)
    kinds = set()
    for _ in range(10):
        p = plain.recv5(10)
        assert p is not None
        kinds.add(p.type)
    assert kinds == {R.PUBACK, R.PUBLISH}
    peak = 0
    while any(t.is_alive() for t in ts):
        peak = max(peak, n.b.rss_kb())
        time.sleep(0.05)
    for t in ts:
        t.join(1)
    assert sum(acked) == N * M
    sys_pauses = V.Client5(n.port)
    sys_pauses.connect5("sysw")
    sys_pauses.subscribe5([("$SYS/ledger/queue/pauses", 0)])
    pauses = int(sys_pauses.expect5(R.PUBLISH, 5).payload)
    assert pauses > 0
    # The burst is N * M * 2 KiB = 20 MiB of payload (three times that with
    # the records, were it all held at once); the ingest queue holds
    # 256 KiB and each paused connection's unread bytes stay in the kernel.
    # (Under ASan freed memory sits in its quarantine: no RSS bound there.)
    print("RSS before %d KiB, peak %d KiB" % (rss0, peak))
    if not _asan():
        assert peak - rss0 < 12 * 1024, (rss0, peak)
    assert n.stop_and_audit(decode=False) == N * M


# --------------------------------------------------- registry, limits, $SYS

def test_registry_records_through_the_pipeline(broker_factory, tmp_path):
    """Devices registered and revoked through the running broker
    ($ledger/admin via `ledgermq device register|revoke --broker`, i.e.
    bk_ledger_submit): the registry is synced after their batch, so the next
    envelope of the new device is accepted and one after its revocation is
    refused; a second registration of the same device is refused at the
    apply stage and not recorded."""
    n = Node(broker_factory, tmp_path, ("sig/# signed",), devices=(), unregistered=("late",))
    dev = n.dev["late"]
    pub = n.v5("p")
    v5_publish(pub, "sig/x", dev.py_envelope(1, b"before"), qos=1, pid=1)
    assert expect_ack(pub) == (0x87, "unknown device")
    broker = "127.0.0.1:%d" % n.port
    cli("device", "register", "--broker", broker, "--operator-key", tmp_path / "op.key",
        "--key", dev.key, "--name", "late")
    v5_publish(pub, "sig/x", dev.py_envelope(2, b"registered"), qos=1, pid=2)
    assert expect_ack(pub) == (0, None)
    p = cli("device", "register", "--broker", broker, "--operator-key", tmp_path / "op.key",
            "--key", dev.key, "--name", "late", check=None)
    assert p.returncode != 0
    cli("device", "revoke", "--broker", broker, "--operator-key", tmp_path / "op.key",
        "--id", dev.id)
    v5_publish(pub, "sig/x", dev.py_envelope(3, b"revoked"), qos=1, pid=3)
    assert expect_ack(pub) == (0x87, "revoked device")
    recs = n.stop_and_audit()
    assert [r[0] for _, r in recs] == [3, 1, 4]
    assert recs[1][1][3] == b"registered"


def test_receive_maximum_counts_held_acks(broker_factory, tmp_path):
    """MQTT 5 Receive Maximum (max_inflight_messages): messages waiting for
    their commit count as in flight; one more is DISCONNECT 0x93."""
    n = Node(broker_factory, tmp_path, ("att/# attested",),
             config={"ledger_batch_ms": 3000, "max_inflight_messages": 3})
    pub = V.Client5(n.port)
    ca = pub.connect5("p")
    assert V.pget(ca.props, V.RECEIVE_MAXIMUM) == 3
    for i in range(4):
        v5_publish(pub, "att/x", b"m%d" % i, qos=1, pid=i + 1)
    d = pub.expect5(R.DISCONNECT, 10)
    assert d.reason == 0x93
    # the three accepted before it are still committed
    assert len(n.stop_and_audit()) == 3


def test_sys_ledger_counters(node):
    """$SYS/ledger/...: records, tree size, refusals by reason."""
    pub = node.v5("p")
    v5_publish(pub, "att/x", b"one", qos=1, pid=1)
    assert expect_ack(pub)[0] == 0
    v5_publish(pub, "sig/x", b"not an envelope", qos=1, pid=2)
    assert expect_ack(pub)[0] == 0x99
    sys = node.v5("sys")
    sys.subscribe5([("$SYS/ledger/#", 0)])
    want = {"$SYS/ledger/records": b"1", "$SYS/ledger/tree_size": b"%d" % (node.base + 1),
            "$SYS/ledger/refused/malformed": b"1", "$SYS/ledger/refused": b"1"}
    seen = {}

    def got_all():
        p = sys.recv5(0.5)
        if p is not None and p.type == R.PUBLISH:
            seen[p.topic] = p.payload
        return all(seen.get(k) == v for k, v in want.items())

    assert wait_for(got_all, 10), seen
    node.stop_and_audit()


def test_device_session_publishes_only_its_own_envelopes(node):
    """A session authenticated as a device (CWT token as the password) may
    only publish its own envelopes (0x87); its attested records name the
    device id as the publisher."""
    d1, d2 = node.dev["d1"], node.dev["d2"]
    tok = cli("token", "--key", d1.key, "--aud", "ledgermq.local/default", "--ttl", "60").stdout
    c = V.Client5(node.port)
    body = (R.mstr("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 60) + b"\x00" +
            R.mstr("dev-session") + R.mstr(d1.id) + R.mstr(tok))
    c.send(R.packet(R.CONNECT, 0, body))
    assert c.expect5(R.CONNACK).reason == 0
    v5_publish(c, "sig/x", d2.py_envelope(1, b"not mine"), qos=1, pid=1)
    assert expect_ack(c) == (0x87, "envelope of another device than the session's")
    v5_publish(c, "sig/x", d1.py_envelope(1, b"mine"), qos=1, pid=2)
    assert expect_ack(c) == (0, None)
    v5_publish(c, "att/x", b"attested", qos=1, pid=3)
    assert expect_ack(c) == (0, None)
    recs = node.stop_and_audit()
    assert [(r[3], r[5], r[6]) for _, r in recs] == [(b"mine", d1.id, "dev-session"),
                                                    (b"attested", d1.id, "dev-session")]


def test_will_on_ledgered_topic_not_published(node):
    """A will never passes verification or attestation: on a ledgered topic
    it is not published (logged), and nothing is recorded; a will on a
    plain topic still is."""
    sub = node.v5("s")
    sub.subscribe5([("sig/#", 0), ("att/#", 0), ("plain/#", 0)])
    for topic in ("sig/w", "att/w", "plain/w"):
        c = R.RawClient(node.port)
        c.send(R.connect_packet("w-" + topic, will=(topic, b"gone", 0, False)))
        c.expect(R.CONNACK)
        c.abort()
    m = sub.expect5(R.PUBLISH)
    assert (m.topic, m.payload) == ("plain/w", b"gone")
    sub.expect_nothing(0.5)
    log = node.b.log()
    assert "will on ledgered topic sig/w not published" in log
    assert "will on ledgered topic att/w not published" in log
    assert node.stop_and_audit() == []


def test_pipelined_order_kept(node):
    """Fifty pipelined PUBLISHes of one connection, signed (some refused)
    and attested mixed: the acks come back in publish order with each
    message's code, and the records are in publish order."""
    d1 = node.dev["d1"]
    pub = node.v5("p")
    expect, payloads = [], []
    for i in range(50):
        if i % 5 == 3:
            bad = bytearray(d1.py_envelope(1000 + i, b"bad%d" % i))
            bad[-1] ^= 1
            v5_publish(pub, "sig/o", bytes(bad), qos=1, pid=i + 1)
            expect.append(0x87)
        elif i % 2:
            v5_publish(pub, "att/o", b"att%d" % i, qos=1, pid=i + 1)
            expect.append(0)
            payloads.append(b"att%d" % i)
        else:
            v5_publish(pub, "sig/o", d1.py_envelope(1000 + i, b"sig%d" % i), qos=1, pid=i + 1)
            expect.append(0)
            payloads.append(b"sig%d" % i)
    got = []
    for _ in range(50):
        p = pub.expect5(R.PUBACK)
        got.append((p.pid, p.reason))
    assert got == [(i + 1, c) for i, c in enumerate(expect)]
    recs = node.stop_and_audit()
    assert [r[3] for _, r in recs] == payloads


def test_dup_after_kill9_restart(broker_factory, tmp_path):
    """kill -9 after a signed message was committed: after the restart a
    DUP resend of it (the device's last accepted sequence, kept in the
    registry's replay slot) gets PUBACK 0 and no second record; an older
    one is a replay."""
    n = Node(broker_factory, tmp_path, ("sig/# signed",))
    d1 = n.dev["d1"]
    envs = [d1.py_envelope(s, b"r%d" % s) for s in (1, 2, 3)]
    pub = n.v5("p")
    for i, env in enumerate(envs):
        v5_publish(pub, "sig/x", env, qos=1, pid=i + 1)
        assert expect_ack(pub)[0] == 0
    n.b.kill()
    n.b.start()
    n.port = n.b.port
    pub = n.v5("p")
    v5_publish(pub, "sig/x", envs[2], qos=1, pid=3, dup=True)
    assert expect_ack(pub) == (0, None)
    v5_publish(pub, "sig/x", envs[1], qos=1, pid=2, dup=True)
    assert expect_ack(pub) == (0x83, "replayed or out-of-order sequence number")
    recs = n.stop_and_audit()
    assert [r[7] for _, r in recs] == [1, 2, 3]


def test_oversize_record_refused_alone(broker_factory, tmp_path):
    """A message whose record would exceed the ledger's 16 MiB record limit
    is refused on its own (0x83), the others of its batch are committed."""
    n = Node(broker_factory, tmp_path, ("att/# attested",),
             config={"max_packet_size": 20 * 1024 * 1024, "ledger_batch_ms": 200})
    pub = n.v5("p")
    v5_publish(pub, "att/x", b"small one", qos=1, pid=1)
    v5_publish(pub, "att/x", b"x" * (17 * 1024 * 1024), qos=1, pid=2)
    v5_publish(pub, "att/x", b"small two", qos=1, pid=3)
    got = [pub.expect5(R.PUBACK, 30) for _ in range(3)]
    assert [(g.pid, g.reason, V.pget(g.props, V.REASON_STRING)) for g in got] == [
        (1, 0, None), (2, 0x83, "ledger record too large"), (3, 0, None)]
    assert [r[3] for _, r in n.stop_and_audit()] == [b"small one", b"small two"]


def test_acl_denied_publish_not_recorded(broker_factory, tmp_path):
    """The ACL is checked before the pipeline: a denied PUBLISH on a
    ledgered topic is never recorded (MQTT 5: 0x87; 3.1.1: acked and
    dropped, as for any topic)."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite att/open/#\ntopic read att/closed/#\n")
    n = Node(broker_factory, tmp_path, ("att/# attested",), config={"acl_file": acl})
    c5 = n.v5("p5")
    v5_publish(c5, "att/closed/x", b"denied v5", qos=1, pid=1)
    assert expect_ack(c5)[0] == 0x87
    c3 = R.RawClient(n.port)
    c3.connect("p3")
    c3.send(R.publish_packet("att/closed/x", b"denied 3.1.1", qos=1, pid=2))
    assert c3.expect(R.PUBACK).pid == 2
    c3.send(R.publish_packet("att/open/x", b"allowed", qos=1, pid=3))
    assert c3.expect(R.PUBACK).pid == 3
    assert [r[3] for _, r in n.stop_and_audit()] == [b"allowed"]


def test_attested_dup_after_kill9_restart(broker_factory, tmp_path):
    """kill -9 after attested messages were committed: after the restart a
    DUP resend of one (same client, topic and payload; the broker rebuilt
    its window of recent attested records from the log) gets PUBACK 0 /
    PUBREC 0 and no second record; the same message without DUP is a new
    reading and recorded; a DUP resend never committed is recorded once."""
    n = Node(broker_factory, tmp_path, ("att/# attested",))
    pub = n.v5("p")
    for i in range(3):
        v5_publish(pub, "att/x", b"r%d" % i, qos=1, pid=i + 1)
        assert expect_ack(pub)[0] == 0
    v5_publish(pub, "att/x", b"q2", qos=2, pid=9)
    assert expect_ack(pub, R.PUBREC)[0] == 0
    n.b.kill()
    n.b.start()
    n.port = n.b.port
    assert "4 attested records of the last 5 remembered" in n.b.log()
    sub = n.v5("s")
    sub.subscribe5([("att/#", 1)])
    pub = n.v5("p")
    v5_publish(pub, "att/x", b"r1", qos=1, pid=2, dup=True)
    assert expect_ack(pub) == (0, None)
    v5_publish(pub, "att/x", b"q2", qos=2, pid=9, dup=True)
    assert expect_ack(pub, R.PUBREC) == (0, None)
    pub.send(V.ack(R.PUBREL, 9))
    assert pub.expect5(R.PUBCOMP).reason == 0
    v5_publish(pub, "att/x", b"r1", qos=1, pid=4)  # a new, equal reading
    assert expect_ack(pub) == (0, None)
    v5_publish(pub, "att/x", b"r9", qos=1, pid=5, dup=True)  # lost before its commit
    assert expect_ack(pub) == (0, None)
    other = n.v5("other")  # another client's equal message is its own
    v5_publish(other, "att/x", b"r2", qos=1, pid=3, dup=True)
    assert expect_ack(other) == (0, None)
    got = [sub.expect5(R.PUBLISH).payload for _ in range(3)]
    assert got == [b"r1", b"r9", b"r2"]
    sub.expect_nothing(0.3)
    recs = n.stop_and_audit()
    assert [(r[6], r[3]) for _, r in recs] == [
        ("p", b"r0"), ("p", b"r1"), ("p", b"r2"), ("p", b"q2"),
        ("p", b"r1"), ("p", b"r9"), ("other", b"r2")]


def test_attested_dup_window_bound(broker_factory, tmp_path):
    """ledger_dup_window bounds what is remembered (and read back at start):
    a DUP resend of an attested record older than the window is recorded
    again; one inside it is not."""
    n = Node(broker_factory, tmp_path, ("att/# attested",), config={"ledger_dup_window": 2})
    pub = n.v5("p")
    for i in range(3):
        v5_publish(pub, "att/x", b"r%d" % i, qos=1, pid=i + 1)
        assert expect_ack(pub)[0] == 0
    n.b.kill()
    n.b.start()
    n.port = n.b.port
    assert "2 attested records of the last 2 remembered" in n.b.log()
    pub = n.v5("p")
    v5_publish(pub, "att/x", b"r2", qos=1, pid=3, dup=True)
    assert expect_ack(pub) == (0, None)
    v5_publish(pub, "att/x", b"r0", qos=1, pid=1, dup=True)
    assert expect_ack(pub) == (0, None)
    recs = n.stop_and_audit()
    assert [r[3] for _, r in recs] == [b"r0", b"r1", b"r2", b"r0"]


def test_attested_kill9_loop_resends_once(broker_factory, tmp_path):
    """kill -9 of the broker again and again during attested QoS 1 streams
    whose clients, after reconnecting, resend every unacknowledged message
    with DUP=1 (same packet id): in the end every message is in the log
    exactly once, the acknowledged ones included, and the audit passes."""
    n = Node(broker_factory, tmp_path, ("att/# attested",), config={"ledger_batch_ms": 2})
    K, WINDOW, ROUNDS = 4, 20, 4
    sent = [dict() for _ in range(K)]  # pid -> payload, unacked
    allp = [list() for _ in range(K)]
    acked = [0]
    nxt = [0] * K
    lock = threading.Lock()
    stop = threading.Event()

    def stream(k, new):
        try:
            c = V.Client5(n.port)
            assert c.connect5("c%d" % k).reason == 0
            for pid, payload in sorted(sent[k].items()):
                v5_publish(c, "att/k", payload, qos=1, pid=pid, dup=True)
            while sent[k] or (new and not stop.is_set()):
                if new and not stop.is_set() and len(sent[k]) < WINDOW:
                    i = nxt[k]
                    nxt[k] += 1
                    pid = i % 60000 + 1
                    payload = b"c%d-%d" % (k, i)
                    sent[k][pid] = payload
                    allp[k].append(payload)
                    v5_publish(c, "att/k", payload, qos=1, pid=pid)
                    continue
                p = c.recv5(5)
                if p is None:
                    return
                assert p.type == R.PUBACK and p.reason == 0, p
                del sent[k][p.pid]
                with lock:
                    acked[0] += 1
        except (OSError, R.Closed, AssertionError):
            return

    for rnd in range(ROUNDS + 1):
        last = rnd == ROUNDS
        start = acked[0]
        ts = [threading.Thread(target=stream, args=(k, not last)) for k in range(K)]
        for t in ts:
            t.start()
        if last:
            for t in ts:
                t.join(30)
            break
        assert wait_for(lambda: acked[0] - start > 300, 30)
        n.b.kill()
        stop.set()
        for t in ts:
            t.join(10)
        stop.clear()
        n.b.start()
        n.port = n.b.port
    assert all(not s for s in sent), [len(s) for s in sent]
    assert n.stop_and_audit(decode=False) > 0
    recs = segment_records(n.data)
    for k in range(K):
        mine = [r[3] for r in recs if r.get(6) == "c%d" % k]
        assert sorted(mine) == sorted(allp[k]), (k, len(mine), len(allp[k]))
    print("%d messages, %d records, %d kill -9" % (sum(map(len, allp)), len(recs), ROUNDS))


def _vm(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def test_burst_many_connections(broker_factory, tmp_path):
    """Issue 6 item 7: many connections publish attested QoS 1 messages;
    a closed-loop calibration measures the sustainable rate, then every
    connection is offered 10x that rate for the burst (a connection whose
    socket does not take more waits, like a device whose send blocks). No
    acked message is lost or recorded twice (the log read back after the
    stop), acks come in publish order, a plain-topic client is served all
    along, and the broker's peak RSS (VmHWM) stays under a bound from the
    configured queue sizes. The issue's size in `make test` and `make
    soak` alike: 1,000 connections, a 10 s burst (about 65 s in all on the
    2-core machine)."""
    import resource
    import selectors
    N, BURST_S, CAL_S = 1000, 10.0, 3.0
    QMSG, QBYTES = 20000, 8 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < N + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 1024), hard))
    n = Node(broker_factory, tmp_path, ("burst/# attested",),
             config={"ledger_queue_messages": QMSG, "ledger_queue_bytes": QBYTES,
                     "ledger_batch_ms": 5, "sys_interval": 1})
    bpid = n.b.proc.pid
    rss0 = _vm(bpid, "VmRSS")
    anon0 = _vm(bpid, "RssAnon")
    anon = [anon0, 0.0]  # peak RssAnon sampled, last sample time
    sel = selectors.DefaultSelector()
    socks, sent, acked, inbuf, outbuf = [], [0] * N, [0] * N, [], []
    topics = [R.mstr("burst/%d" % k) for k in range(N)]

    def packet(k, i):
        body = topics[k] + struct.pack("!H", i % 65535 + 1) + b"m%d/%d" % (k, i) + b"." * 40
        return bytes([0x32, len(body)]) + body

    for k in range(N):
        s = socket.create_connection(("127.0.0.1", n.port), timeout=20)
        s.sendall(R.connect_packet("burst%d" % k))
        s.setblocking(False)
        socks.append(s)
        inbuf.append(bytearray(b""))
        outbuf.append(bytearray(b""))
        sel.register(s, selectors.EVENT_READ, k)
    connacks = [0]

    def io(timeout):
        if time.monotonic() - anon[1] >= 0.05:
            anon[0] = max(anon[0], _vm(bpid, "RssAnon"))
            anon[1] = time.monotonic()
        for key, ev in sel.select(timeout):
            k = key.data
            s = socks[k]
            if ev & selectors.EVENT_READ:
                data = s.recv(262144)
                assert data, "connection %d closed by the broker" % k
                b = inbuf[k]
                b += data
                off = 0
                while len(b) - off >= 4:
                    if b[off] == 0x20:
                        assert b[off + 3] == 0, "CONNACK %d" % b[off + 3]
                        connacks[0] += 1
                    else:
                        assert b[off] == 0x40 and b[off + 1] == 2, bytes(b[off:off + 4])
                        pid = struct.unpack_from("!H", b, off + 2)[0]
                        assert pid == acked[k] % 65535 + 1, (k, pid, acked[k])  # in order
                        acked[k] += 1
                    off += 4
                del b[:off]
            if ev & selectors.EVENT_WRITE and outbuf[k]:
                try:
                    m = s.send(outbuf[k])
                    del outbuf[k][:m]
                except BlockingIOError:
                    pass
            want = selectors.EVENT_READ | (selectors.EVENT_WRITE if outbuf[k] else 0)
            if want != key.events:
                sel.modify(s, want, k)

    def offer(k, count):
        """Queue up to COUNT new messages on connection k unless its socket
        is backed up; returns how many."""
        if len(outbuf[k]) >= 16384 or sent[k] - acked[k] >= 30000:
            return 0
        count = min(count, 30000 - (sent[k] - acked[k]))
        outbuf[k] += b"".join(packet(k, i) for i in range(sent[k], sent[k] + count))
        sent[k] += count
        sel.modify(socks[k], selectors.EVENT_READ | selectors.EVENT_WRITE, k)
        return count

    def drain(limit):
        deadline = time.monotonic() + limit
        while any(sent[k] > acked[k] or outbuf[k] for k in range(N)):
            assert time.monotonic() < deadline, (sum(sent), sum(acked))
            io(0.5)

    try:
        deadline = time.monotonic() + 30
        while connacks[0] < N:
            assert time.monotonic() < deadline
            io(0.5)
        # Calibration: closed loop, 8 messages in flight per connection.
        t0 = time.monotonic()
        a0 = sum(acked)
        while time.monotonic() - t0 < CAL_S:
            for k in range(N):
                if sent[k] - acked[k] < 8:
                    offer(k, 8 - (sent[k] - acked[k]))
            io(0.05)
        rate = (sum(acked) - a0) / (time.monotonic() - t0)
        drain(60)
        assert rate > 0
        # Burst: 10x the sustainable rate offered, plain traffic meanwhile.
        plain_got, plain_err = [], []
        burst_on = threading.Event()
        burst_on.set()

        def plain():
            try:
                c = V.Client5(n.port)
                assert c.connect5("plain").reason == 0
                c.subscribe5([("plain/t", 1)])
                i = 0
                while burst_on.is_set():
                    i += 1
                    v5_publish(c, "plain/t", b"p%d" % i, qos=1, pid=i)
                    kinds = set()
                    for _ in range(2):
                        p = c.recv5(20)
                        assert p is not None, "plain message %d not served" % i
                        kinds.add(p.type)
                        if p.type == R.PUBLISH:
                            plain_got.append((p.payload, burst_on.is_set()))
                            if p.qos:
                                c.send(V.ack(R.PUBACK, p.pid))
                    assert kinds == {R.PUBACK, R.PUBLISH}, kinds
                    time.sleep(0.1)
                c.close()
            except Exception as e:  # reported by the main thread
                plain_err.append(repr(e))

        pt = threading.Thread(target=plain)
        pt.start()
        target = 10 * rate
        t0 = time.monotonic()
        s0, a0 = sum(sent), sum(acked)
        offered = 0.0
        k = 0
        try:
            while time.monotonic() - t0 < BURST_S:
                offered = target * (time.monotonic() - t0)
                due = int(offered) - (sum(sent) - s0)
                tries = 0
                while due > 0 and tries < N:
                    got = offer(k, min(due, max(1, int(target / N / 20) + 1)))
                    due -= got
                    k = (k + 1) % N
                    tries += 1
                io(0.01)
            burst_sent = sum(sent) - s0
            burst_acked_during = sum(acked) - a0
        finally:
            burst_on.clear()
            pt.join(30)
        drain(120)
        total = sum(acked)
        hwm = _vm(bpid, "VmHWM")
        rss_file = _vm(bpid, "RssFile")
    finally:
        for s in socks:
            s.close()
        sel.close()
    assert not plain_err, plain_err
    assert any(during for _, during in plain_got), plain_got
    assert n.stop_and_audit(decode=False) > 0
    recs = [r for r in segment_records(n.data) if r.get(2, "").startswith("burst/")]
    ngot = len(recs)
    seen = {}
    for r in recs:
        seen[r[3]] = seen.get(r[3], 0) + 1
    assert not [p for p, c in seen.items() if c > 1], "recorded twice"
    expect = {(b"m%d/%d" % (k, i)) + b"." * 40 for k in range(N) for i in range(acked[k])}
    assert set(seen) == expect, (len(seen), len(expect))
    # Bound on the broker's own (anonymous) memory: the ingest queue's
    # bytes (messages and records, allocator overhead: x2), what it may hold
    # per connection (a read buffer being parsed when the queue fills, the
    # acks it writes: 64 KiB), and a fixed 48 MiB (libuv, the committer's
    # and workers' buffers and stacks). VmHWM also counts the pages of the
    # ledger's own memory-mapped files (index, Merkle nodes, LMDB leaf
    # index) touched while the log grows by a million records: page cache
    # the kernel can drop, growing with the log, not with the queue; it is
    # reported, not bounded.
    bound = anon0 + 2 * QBYTES // 1024 + N * 64 + 48 * 1024
    print("\nburst: %d connections, sustainable %.0f msg/s (closed loop, %.0f s), offered "
          "%.0f msg/s for %.0f s: %d sent, %d acked during the burst, %d acked in all, "
          "%d records; plain messages served during the burst: %d; broker RSS before %d KiB "
          "(anonymous %d), peak anonymous %d KiB (bound %d KiB), peak VmHWM %d KiB "
          "(file-backed at the end %d KiB)"
          % (N, rate, CAL_S, target, BURST_S, burst_sent, burst_acked_during, total, ngot,
             sum(1 for _, d in plain_got if d), rss0, anon0, anon[0], bound, hwm, rss_file))
    if not _asan():
        assert anon[0] < bound, (anon[0], bound)
