"""Limits from the config (issue 2, point 5): max connections, max packet
size, max queued messages/bytes, max topic length/levels, max retained
messages, max subscriptions, and bounded memory for a slow QoS 0 consumer.
Over a limit: refuse or disconnect (per the spec), never a crash."""
import socket
import threading
import time

import pytest

import mqttraw as R
from conftest import IS_MOSQUITTO, PahoClient, ledgermq_only, wait_for


def connect(raw, port, cid, clean=True):
    c = raw(port)
    p = c.connect(cid, clean=clean)
    assert p.rc == 0
    return c


def witness_ok(port, tag="w"):
    """A fresh paho client can still publish and receive."""
    c = PahoClient(port, client_id="witness-" + tag)
    try:
        c.subscribe("witness/" + tag, 1)
        c.publish("witness/" + tag, b"alive", qos=1)
        m = c.get(5)
        return m is not None and m.payload == b"alive"
    finally:
        c.disconnect()


def assert_not_accepted(c, timeout=5):
    try:
        c.send(R.connect_packet("one-too-many"))
    except OSError:
        return  # refused outright
    assert c.wait_closed(timeout), "N+1th connection kept open: %r" % c.seen
    assert not [p for p in c.seen if p.type == R.CONNACK and p.rc == 0], \
        "N+1th connection accepted: %r" % c.seen


def test_max_connections(broker_factory, raw):
    b = broker_factory(config={"max_connections": 5})
    conns = [connect(raw, b.port, "mc%d" % i) for i in range(5)]
    try:
        extra = raw(b.port)
    except OSError:
        extra = None
    if extra is not None:
        assert_not_accepted(extra)
    assert all(c.is_open() for c in conns), "existing clients affected"
    conns[0].disconnect()

    def slot_free():
        try:
            c = raw(b.port)
            c.send(R.connect_packet("mc-new"))
            p = c.recv(2)
            ok = p is not None and p.type == R.CONNACK and p.rc == 0
            if not ok:
                c.close()
            return ok
        except (OSError, R.Closed):
            return False

    assert wait_for(slot_free, 5, 0.2), "slot not freed after a client left"
    assert b.running()
    if not IS_MOSQUITTO:
        assert b.wait_log(r"(warning|notice|error).*max_connections"), \
            "refusal over max_connections not logged:\n" + b.log()


def test_max_packet_size(broker_factory, raw):
    b = broker_factory(config={"max_packet_size": 1024})
    s = connect(raw, b.port, "mps-sub")
    s.subscribe([("mps/#", 1)])
    big = connect(raw, b.port, "mps-big")
    big.send(R.publish_packet("mps/big", b"x" * 2000, qos=1, pid=1))
    assert big.wait_closed(5), "oversize PUBLISH did not close the connection"
    assert not [p for p in big.seen if p.type == R.PUBACK], "oversize PUBLISH acked"
    # others unaffected; a packet under the limit passes
    ok = connect(raw, b.port, "mps-ok")
    ok.publish("mps/ok", b"y" * 900, qos=1)
    got = s.recv_publishes(2, timeout=2)
    assert [(m.topic, len(m.payload)) for m in got] == [("mps/ok", 900)]
    assert witness_ok(b.port)


def test_max_packet_size_announced_length_only(broker_factory, raw):
    """The check uses the announced remaining length: the broker must not
    wait for (or buffer) 200 MB before refusing."""
    b = broker_factory(config={"max_packet_size": 1024})
    c = connect(raw, b.port, "mps-announce")
    c.send(bytes([0x30]) + R.varint(200 * 1024 * 1024) + b"\x00\x01a")
    assert c.wait_closed(5)
    assert witness_ok(b.port)


@pytest.mark.parametrize("qos", [1, 2])
def test_max_queued_messages(broker_factory, raw, qos):
    b = broker_factory(config={"max_queued_messages": 10})
    s = connect(raw, b.port, "mq-sub", clean=False)
    s.subscribe([("mq/t", qos)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "mq-pub")
    for i in range(30):
        p.publish("mq/t", b"%02d" % i, qos=qos, pid=i + 1)  # publisher is never refused
    assert p.is_open()
    s = connect(raw, b.port, "mq-sub", clean=False)
    got = s.recv_publishes(30, timeout=2.5)
    assert 1 <= len(got) <= 10, "offline session got %d messages (limit 10)" % len(got)
    assert witness_ok(b.port)


def test_max_queued_bytes(broker_factory, raw):
    b = broker_factory(config={"max_queued_bytes": 10000, "max_queued_messages": 1000})
    s = connect(raw, b.port, "mqb-sub", clean=False)
    s.subscribe([("mqb/t", 1)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "mqb-pub")
    for i in range(30):
        p.publish("mqb/t", bytes([65 + i % 26]) * 1000, qos=1, pid=i + 1)
    s = connect(raw, b.port, "mqb-sub", clean=False)
    got = s.recv_publishes(30, timeout=2.5)
    total = sum(len(m.payload) for m in got)
    assert 1 <= len(got) <= 10, "offline session got %d x 1000 B (limit 10000 B)" % len(got)
    assert total <= 10000


@ledgermq_only("mosquitto has no max_topic_length")
def test_max_topic_length(broker_factory, raw):
    b = broker_factory(config={"max_topic_length": 64})
    s = connect(raw, b.port, "mtl-sub")
    assert s.subscribe([("t" * 64, 0), ("u" * 65, 0), ("v/" * 40 + "#", 0)]) == [0, 0x80, 0x80]
    ok = connect(raw, b.port, "mtl-ok")
    ok.publish("t" * 64, b"fits", qos=1)
    assert [m.payload for m in s.recv_publishes(1)] == [b"fits"]
    long = connect(raw, b.port, "mtl-long")
    long.send(R.publish_packet("x" * 100, b"too long", qos=1, pid=1))
    assert long.wait_closed(5), "PUBLISH with a too long topic not closed"
    assert s.is_open() and witness_ok(b.port)


@ledgermq_only("mosquitto has no max_topic_levels")
def test_max_topic_levels(broker_factory, raw):
    b = broker_factory(config={"max_topic_levels": 4})
    s = connect(raw, b.port, "mtv-sub")
    assert s.subscribe([("a/b/c/d", 0), ("a/b/c/d/e", 0), ("+/+/+/+/#", 0)]) == [0, 0x80, 0x80]
    ok = connect(raw, b.port, "mtv-ok")
    ok.publish("a/b/c/d", b"four", qos=1)
    assert [m.payload for m in s.recv_publishes(1)] == [b"four"]
    deep = connect(raw, b.port, "mtv-deep")
    deep.send(R.publish_packet("a/b/c/d/e", b"five", qos=1, pid=1))
    assert deep.wait_closed(5), "PUBLISH with too many levels not closed"
    assert s.is_open() and witness_ok(b.port)


@ledgermq_only("mosquitto has no max_retained_messages")
def test_max_retained_messages(broker_factory, raw):
    b = broker_factory(config={"max_retained_messages": 3})
    p = connect(raw, b.port, "mr-pub")
    for i in range(5):
        p.publish("mr/%d" % i, b"v%d" % i, qos=1, retain=True, pid=i + 1)
    assert p.is_open(), "publisher disconnected over the retained limit"
    # replacing an existing retained message at the limit still works
    p.publish("mr/0", b"v0-new", qos=1, retain=True, pid=10)
    s = connect(raw, b.port, "mr-sub")
    s.subscribe([("mr/#", 1)])
    got = s.recv_then_quiet(3)
    assert sorted((m.topic, m.payload) for m in got) == [
        ("mr/0", b"v0-new"), ("mr/1", b"v1"), ("mr/2", b"v2")]
    # deleting one frees a slot
    p.publish("mr/1", b"", qos=1, retain=True, pid=11)
    p.publish("mr/4", b"v4", qos=1, retain=True, pid=12)
    s2 = connect(raw, b.port, "mr-sub2")
    s2.subscribe([("mr/#", 1)])
    got = s2.recv_then_quiet(3)
    assert sorted(m.topic for m in got) == ["mr/0", "mr/2", "mr/4"]


@ledgermq_only("mosquitto has no max_subscriptions_per_client")
def test_max_subscriptions_per_client(broker_factory, raw):
    b = broker_factory(config={"max_subscriptions_per_client": 3})
    s = connect(raw, b.port, "ms")
    assert s.subscribe([("s/1", 1), ("s/2", 1), ("s/3", 1)], pid=1) == [1, 1, 1]
    assert s.subscribe([("s/4", 1)], pid=2) == [0x80]
    assert s.subscribe([("s/1", 2)], pid=3) == [2], "re-subscribing an existing filter refused"
    assert s.is_open()


def test_slow_qos0_consumer_bounded_memory(broker_factory, raw):
    """A subscriber that never reads while 200 MB of QoS 0 is published: the
    broker drops for it instead of buffering (RSS grows by less than half of
    what was published, and stays under 200 MB); the publisher and other
    clients keep being served."""
    b = broker_factory()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(5)
    slow.connect(("127.0.0.1", b.port))
    slow.sendall(R.connect_packet("slow", keepalive=0))
    slow.sendall(R.subscribe_packet(1, [("flood/#", 0)]))
    time.sleep(0.3)  # CONNACK/SUBACK sit in its buffer; it never reads again

    watcher = PahoClient(b.port, client_id="flood-watch")
    watcher.subscribe("other/#", 1)

    rss0 = b.rss_kb() or 0
    rss_max = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            v = b.rss_kb()
            if v:
                rss_max[0] = max(rss_max[0], v)
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    pub = connect(raw, b.port, "flood-pub")
    pub.sock.settimeout(15)
    chunk = R.publish_packet("flood/x", b"\xab" * 65536, qos=0)
    try:
        for i in range(3200):  # 200 MiB
            pub.send(chunk)
            if i % 400 == 399:
                watcher.publish("other/t", b"%d" % i, qos=1, timeout=10)
    except socket.timeout:
        pytest.fail("broker stopped reading the publisher (backpressure from a slow QoS 0 "
                    "consumer?)")
    finally:
        stop.set()
        t.join(5)
    assert pub.is_open(timeout=10), "publisher disconnected"
    got = watcher.get_n(8, timeout=10)
    assert len(got) == 8, "other clients starved: %d of 8" % len(got)
    watcher.disconnect()
    assert b.running()
    assert rss_max[0] < 200 * 1024, "broker RSS reached %d MB" % (rss_max[0] // 1024)
    assert rss_max[0] - rss0 < 100 * 1024, "broker RSS grew by %d MB for a 200 MB flood" % (
        (rss_max[0] - rss0) // 1024)
    if not IS_MOSQUITTO:
        assert b.wait_log(r"(warning|notice|error).*slow"), \
            "dropping for a slow consumer not logged:\n" + b.log()[-3000:]
    slow.close()


@ledgermq_only("checks ledgermqd's log")
def test_limit_violation_is_logged(broker_factory, raw):
    b = broker_factory(config={"max_packet_size": 1024})
    big = connect(raw, b.port, "logme")
    before = len(b.log())
    big.send(R.publish_packet("l/big", b"x" * 5000))
    assert big.wait_closed(5)
    assert b.wait_log(r"(warning|notice|error).*logme.*max_packet_size|"
                      r"(warning|notice|error).*max_packet_size.*logme", before), \
        "no log line about the oversize packet:\n" + b.log()[before:]


@ledgermq_only("checks ledgermqd's log")
def test_queue_full_is_logged(broker_factory, raw):
    b = broker_factory(config={"max_queued_messages": 2})
    s = connect(raw, b.port, "qfull", clean=False)
    s.subscribe([("qf/t", 1)])
    s.disconnect()
    before = len(b.log())
    p = connect(raw, b.port, "qf-pub")
    for i in range(5):
        p.publish("qf/t", b"x", qos=1, pid=i + 1)
    assert b.wait_log(r"(warning|notice|error).*qfull", before), \
        "no log line about dropping for a full queue:\n" + b.log()[before:]


def test_slow_qos1_consumer_bounded_memory(broker_factory, raw):
    """An online QoS 1 subscriber that never reads nor acks while 100 MB of
    QoS 1 is published: the publisher still gets every PUBACK, the broker
    keeps at most its queue limits for the subscriber, RSS stays bounded."""
    b = broker_factory(config={"max_queued_messages": 100, "max_queued_bytes": 4 * 1024 * 1024})
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(5)
    slow.connect(("127.0.0.1", b.port))
    slow.sendall(R.connect_packet("slow1", keepalive=0, clean=False))
    slow.sendall(R.subscribe_packet(1, [("flood1/#", 1)]))
    time.sleep(0.3)
    rss0 = b.rss_kb() or 0
    rss_max = rss0
    pub = connect(raw, b.port, "flood1-pub")
    pub.sock.settimeout(15)
    payload = b"\xcd" * 32768
    n, window, acked = 3200, 64, 0
    sent = 0
    deadline = time.monotonic() + 60
    while acked < n:
        assert time.monotonic() < deadline, "publisher starved: %d of %d acked" % (acked, n)
        while sent < n and sent - acked < window:
            pub.send(R.publish_packet("flood1/x", payload, qos=1, pid=sent % 65535 + 1))
            sent += 1
        pk = pub.recv(10)
        assert pk is not None, "no PUBACK within 10 s (%d of %d acked)" % (acked, n)
        assert pk.type == R.PUBACK
        acked += 1
        if acked % 200 == 0:
            rss_max = max(rss_max, b.rss_kb() or 0)
    rss_max = max(rss_max, b.rss_kb() or 0)
    assert b.running()
    assert rss_max < 200 * 1024, "broker RSS reached %d MB" % (rss_max // 1024)
    assert rss_max - rss0 < 60 * 1024, "broker RSS grew by %d MB" % ((rss_max - rss0) // 1024)
    assert witness_ok(b.port)
    slow.close()


@ledgermq_only("ledgermqd's $SYS/broker/messages/dropped counter")
def test_slow_consumer_drops_counted_in_sys(broker_factory, raw):
    b = broker_factory(config={"sys_interval": 1})
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(5)
    slow.connect(("127.0.0.1", b.port))
    slow.sendall(R.connect_packet("slow-count", keepalive=0))
    slow.sendall(R.subscribe_packet(1, [("cnt/#", 0)]))
    time.sleep(0.3)
    pub = connect(raw, b.port, "cnt-pub")
    pub.sock.settimeout(15)
    chunk = R.publish_packet("cnt/x", b"\x11" * 65536, qos=0)
    for _ in range(1600):  # 100 MiB
        pub.send(chunk)
    assert pub.is_open(timeout=10)
    w = connect(raw, b.port, "cnt-watch")
    w.subscribe([("$SYS/broker/messages/dropped", 0)])
    deadline = time.monotonic() + 5
    value = 0
    while time.monotonic() < deadline and value == 0:
        for m in w.recv_publishes(1, timeout=1.5):
            value = int(m.payload.split()[0])
    assert value > 0, "$SYS/broker/messages/dropped stayed 0 after dropping for a slow consumer"
    slow.close()
