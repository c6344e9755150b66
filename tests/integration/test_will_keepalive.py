"""Wills and keep-alive (issue 2, point 3): the will is published on an
abnormal disconnect and on a keep-alive timeout (1.5x the keep-alive), not
on DISCONNECT; will retain; PINGREQ keeps a connection alive."""
import time

import mqttraw as R
from conftest import IS_MOSQUITTO, ledgermq_only

# 1.5 x keepalive 2 = 3 s; the bound leaves room for timer granularity.
# mosquitto 2.0.11 checks keep-alives coarsely and closes after up to ~6.1 s.
KA_MAX = 8.0 if IS_MOSQUITTO else 6.0


def watcher(raw, port, filt="will/#", qos=1, cid="watcher"):
    w = raw(port)
    assert w.connect(cid).rc == 0
    w.subscribe([(filt, qos)])
    return w


def test_will_on_socket_close_without_disconnect(broker, raw):
    w = watcher(raw, broker.port)
    d = raw(broker.port)
    assert d.connect("dying", will=("will/dying", b"gone", 1, False)).rc == 0
    d.close()
    got = w.recv_publishes(1, timeout=5)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        ("will/dying", b"gone", 1, False)]


def test_will_on_connection_reset(broker, raw):
    w = watcher(raw, broker.port)
    d = raw(broker.port)
    assert d.connect("reset", will=("will/reset", b"rst", 0, False)).rc == 0
    d.abort()
    got = w.recv_publishes(1, timeout=5)
    assert [(m.topic, m.payload) for m in got] == [("will/reset", b"rst")]


def test_no_will_on_disconnect(broker, raw):
    w = watcher(raw, broker.port)
    d = raw(broker.port)
    assert d.connect("polite", will=("will/polite", b"should not", 1, False)).rc == 0
    d.disconnect()
    assert w.recv_publishes(1, timeout=1.5) == []


def test_will_on_protocol_error(broker, raw):
    """A connection closed by the broker for a malformed packet is abnormal."""
    w = watcher(raw, broker.port)
    d = raw(broker.port)
    assert d.connect("rude", will=("will/rude", b"bye", 0, False)).rc == 0
    d.send(R.publish_packet("bad/#", b"x"))  # wildcard in a PUBLISH topic
    assert d.wait_closed(5)
    got = w.recv_publishes(1, timeout=5)
    assert [(m.topic, m.payload) for m in got] == [("will/rude", b"bye")]


def test_will_retain(broker, raw):
    d = raw(broker.port)
    assert d.connect("retainer", will=("will/kept", b"last words", 1, True)).rc == 0
    d.close()
    time.sleep(0.3)
    # a subscriber arriving later gets it as a retained message
    deadline = time.monotonic() + 5
    got = []
    n = 0
    while not got and time.monotonic() < deadline:
        n += 1
        w = watcher(raw, broker.port, "will/kept", cid="late%d" % n)
        got = w.recv_publishes(1, timeout=0.5)
        w.disconnect()
    assert [(m.payload, m.retain) for m in got] == [(b"last words", True)]


def test_will_on_keepalive_timeout(broker, raw):
    w = watcher(raw, broker.port)
    d = raw(broker.port)
    t0 = time.monotonic()
    assert d.connect("silent", keepalive=2, will=("will/silent", b"timeout", 1, False)).rc == 0
    got = w.recv_publishes(1, timeout=8)
    elapsed = time.monotonic() - t0
    assert [(m.topic, m.payload) for m in got] == [("will/silent", b"timeout")]
    assert elapsed >= 2.0, "will sent after %.2f s, before 1x keepalive" % elapsed
    assert elapsed <= KA_MAX, "will sent after %.2f s" % elapsed


def test_keepalive_timeout_closes_silent_client(broker, raw):
    """keepalive 2, nothing sent: closed after ~3 s (between 2 and 6 s);
    a keepalive-0 client silent for as long stays connected."""
    forever = raw(broker.port)
    assert forever.connect("ka0", keepalive=0).rc == 0
    c = raw(broker.port)
    t0 = time.monotonic()
    assert c.connect("ka2", keepalive=2).rc == 0
    assert c.wait_closed(KA_MAX + 2), "not closed within %.0f s" % (KA_MAX + 2)
    elapsed = time.monotonic() - t0
    assert 2.0 <= elapsed <= KA_MAX, "closed after %.2f s" % elapsed
    assert forever.is_open(), "keepalive 0 client was disconnected"


def test_pingreq_keeps_connection_alive(broker, raw):
    c = raw(broker.port)
    assert c.connect("pinger", keepalive=2).rc == 0
    t_end = time.monotonic() + 5.0
    while time.monotonic() < t_end:
        time.sleep(1.0)
        c.send(R.pingreq_packet())
        p = c.expect(R.PINGRESP, timeout=2)
        assert p.flags == 0 and p.body == b""
    assert c.is_open()


def test_other_packets_keep_connection_alive(broker, raw):
    c = raw(broker.port)
    assert c.connect("talker", keepalive=2).rc == 0
    t_end = time.monotonic() + 4.5
    i = 0
    while time.monotonic() < t_end:
        time.sleep(1.0)
        i += 1
        c.publish("ka/talk", b"%d" % i, qos=1, pid=i)
    assert c.is_open()


@ledgermq_only("pins ledgermqd's keep-alive grace at 1.5x (mosquitto's differs)")
def test_keepalive_grace_is_one_and_a_half_times(broker, raw):
    """keepalive 4: a PINGREQ 5 s after CONNECT (1.25x) still finds the
    connection open — a 1x deadline would have closed it at 4 s — and after
    that last packet, silence closes it at 1.5x = 6 s, well before 2x = 8 s."""
    c = raw(broker.port)
    assert c.connect("ka4", keepalive=4).rc == 0
    time.sleep(5.0)
    assert c.is_open(), "closed before 1.25x keepalive"
    c.send(R.pingreq_packet())
    c.expect(R.PINGRESP, timeout=2)
    t_last = time.monotonic()
    assert c.wait_closed(10), "not closed within 10 s of silence"
    silent = time.monotonic() - t_last
    assert 5.0 <= silent <= 7.5, "closed after %.2f s of silence (want ~6 s = 1.5 x 4)" % silent
