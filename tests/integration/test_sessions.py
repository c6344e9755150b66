"""Session takeover, persistent sessions with offline queueing and DUP
redelivery, and the per-client inflight window (issue 2, point 3)."""
import time

import mqttraw as R
from conftest import IS_MOSQUITTO


def connect(raw, port, cid, clean=True, **kw):
    c = raw(port)
    p = c.connect(cid, clean=clean, **kw)
    assert p.rc == 0
    c.session_present = p.session_present
    return c


def test_takeover_closes_first_connection(broker, raw):
    a = connect(raw, broker.port, "dup-id")
    b = connect(raw, broker.port, "dup-id")
    assert a.wait_closed(5), "first connection not closed on takeover"
    assert b.is_open()
    b.subscribe([("to/x", 1)])
    b.publish("to/x", b"mine", qos=1)
    assert [m.payload for m in b.recv_publishes(1)] == [b"mine"]


def test_takeover_keeps_persistent_session(broker, raw):
    a = connect(raw, broker.port, "takeover-p", clean=False)
    a.subscribe([("tp/#", 1)])
    b = connect(raw, broker.port, "takeover-p", clean=False)
    assert b.session_present
    assert a.wait_closed(5)
    p = connect(raw, broker.port, "tp-pub")
    p.publish("tp/1", b"to-b", qos=1)
    assert [m.payload for m in b.recv_publishes(1)] == [b"to-b"]


def test_takeover_with_clean_session_discards_state(broker, raw):
    a = connect(raw, broker.port, "takeover-c", clean=False)
    a.subscribe([("tc/#", 1)])
    b = connect(raw, broker.port, "takeover-c", clean=True)
    assert not b.session_present
    assert a.wait_closed(5)
    p = connect(raw, broker.port, "tc-pub")
    p.publish("tc/1", b"nobody", qos=1)
    assert b.recv_publishes(1, timeout=1.0) == []


def test_persistent_session_offline_queue(broker, raw, clients):
    s = connect(raw, broker.port, "offline-sub", clean=False)
    assert s.subscribe([("off/q1", 1), ("off/q2", 2), ("off/q0", 0)]) == [1, 2, 0]
    s.disconnect()
    time.sleep(0.2)
    p = clients(broker.port)
    for i in range(3):
        p.publish("off/q1", b"one-%d" % i, qos=1)
        p.publish("off/q2", b"two-%d" % i, qos=2)
        p.publish("off/q0", b"zero-%d" % i, qos=0)
    s = connect(raw, broker.port, "offline-sub", clean=False)
    assert s.session_present
    got = s.recv_publishes(9, timeout=2)
    q12 = [(m.topic, m.payload, m.qos) for m in got if m.topic != "off/q0"]
    assert q12 == [x for i in range(3) for x in (("off/q1", b"one-%d" % i, 1),
                                                  ("off/q2", b"two-%d" % i, 2))]
    # the subscription is still there for live messages
    p.publish("off/q1", b"live", qos=1)
    got = s.recv_publishes(1)
    assert [m.payload for m in got] == [b"live"]


def test_clean_session_gets_no_offline_messages(broker, raw, clients):
    s = connect(raw, broker.port, "clean-sub", clean=True)
    s.subscribe([("cl/#", 1)])
    s.disconnect()
    time.sleep(0.2)
    p = clients(broker.port)
    p.publish("cl/1", b"lost", qos=1)
    s = connect(raw, broker.port, "clean-sub", clean=True)
    assert not s.session_present
    assert s.recv_publishes(1, timeout=1.0) == []


def test_unacked_qos1_redelivered_with_dup(broker, raw):
    s = connect(raw, broker.port, "dup1", clean=False)
    s.subscribe([("dup/1", 1)])
    p = connect(raw, broker.port, "dup1-pub")
    p.publish("dup/1", b"again", qos=1)
    first = s.recv_publishes(1, ack=False)
    assert len(first) == 1 and not first[0].dup
    s.close()  # never acked
    time.sleep(0.2)
    s = connect(raw, broker.port, "dup1", clean=False)
    assert s.session_present
    again = s.recv_publishes(1, ack=False)
    assert len(again) == 1, "unacknowledged QoS 1 message not redelivered"
    m = again[0]
    assert (m.topic, m.payload, m.qos, m.dup) == ("dup/1", b"again", 1, True)
    assert m.pid == first[0].pid, "redelivery must reuse the packet id"
    s.send(R.ack_packet(R.PUBACK, m.pid))
    s.expect_nothing(1.0)
    s.disconnect()
    time.sleep(0.2)
    s = connect(raw, broker.port, "dup1", clean=False)
    assert s.recv_publishes(1, timeout=1.0) == [], "acked message delivered again"


def test_unacked_qos2_publish_redelivered_with_dup(broker, raw):
    s = connect(raw, broker.port, "dup2", clean=False)
    s.subscribe([("dup/2", 2)])
    p = connect(raw, broker.port, "dup2-pub")
    p.publish("dup/2", b"q2", qos=2)
    first = s.recv_publishes(1, ack=False)
    assert len(first) == 1
    s.close()  # no PUBREC
    time.sleep(0.2)
    s = connect(raw, broker.port, "dup2", clean=False)
    m = s.expect(R.PUBLISH)
    assert (m.payload, m.qos, m.dup, m.pid) == (b"q2", 2, True, first[0].pid)
    s.send(R.ack_packet(R.PUBREC, m.pid))
    assert s.expect(R.PUBREL).pid == m.pid
    s.send(R.ack_packet(R.PUBCOMP, m.pid))
    s.expect_nothing(1.0)


def test_qos2_pubrel_resent_on_reconnect(broker, raw):
    s = connect(raw, broker.port, "rel", clean=False)
    s.subscribe([("rel/t", 2)])
    p = connect(raw, broker.port, "rel-pub")
    p.publish("rel/t", b"x", qos=2)
    m = s.expect(R.PUBLISH)
    s.send(R.ack_packet(R.PUBREC, m.pid))
    rel = s.expect(R.PUBREL)
    assert rel.pid == m.pid
    s.close()  # PUBCOMP never sent
    time.sleep(0.2)
    s = connect(raw, broker.port, "rel", clean=False)
    assert s.session_present
    p2 = s.recv(5)
    assert p2 is not None, "nothing resent on reconnect"
    assert p2.type == R.PUBREL, "expected PUBREL resent, got %r" % p2
    assert p2.pid == m.pid and p2.flags == 2
    s.send(R.ack_packet(R.PUBCOMP, m.pid))
    s.expect_nothing(1.0)  # in particular, not the PUBLISH again


def test_inflight_window(broker_factory, raw):
    b = broker_factory(config={"max_inflight_messages": 5})
    s = connect(raw, b.port, "window")
    s.subscribe([("win/t", 1)])
    p = connect(raw, b.port, "window-pub")
    for i in range(12):
        p.publish("win/t", b"%02d" % i, qos=1, pid=i + 1)
    got = s.recv_then_quiet(5, ack=False)
    assert [m.payload for m in got] == [b"%02d" % i for i in range(5)], \
        "inflight window of 5 not respected: %r" % got
    s.send(R.ack_packet(R.PUBACK, got[0].pid))
    nxt = s.recv_then_quiet(1, ack=False)
    if IS_MOSQUITTO:  # mosquitto 2.0.11 refills the whole window after one ack
        assert nxt and nxt[0].payload == b"05"
    else:
        assert [m.payload for m in nxt] == [b"05"], "one ack must release exactly one: %r" % nxt
    # acking everything drains the rest
    for m in got[1:] + nxt:
        s.send(R.ack_packet(R.PUBACK, m.pid))
    seen = len(got) + len(nxt)
    rest = s.recv_publishes(12 - seen, timeout=3.0, ack=True)
    assert [m.payload for m in rest] == [b"%02d" % i for i in range(seen, 12)]


def test_inflight_window_qos2(broker_factory, raw):
    b = broker_factory(config={"max_inflight_messages": 3})
    s = connect(raw, b.port, "window2")
    s.subscribe([("win2/t", 2)])
    p = connect(raw, b.port, "window2-pub")
    for i in range(6):
        p.publish("win2/t", b"%02d" % i, qos=2, pid=i + 1)
    got = s.recv_then_quiet(3, ack=False)
    assert [m.payload for m in got] == [b"00", b"01", b"02"]


def test_inflight_window_applies_to_offline_queue_on_reconnect(broker_factory, raw):
    b = broker_factory(config={"max_inflight_messages": 4})
    s = connect(raw, b.port, "window-off", clean=False)
    s.subscribe([("wo/t", 1)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "wo-pub")
    for i in range(10):
        p.publish("wo/t", b"%02d" % i, qos=1, pid=i + 1)
    s = connect(raw, b.port, "window-off", clean=False)
    got = s.recv_then_quiet(4, ack=False)
    assert [m.payload for m in got] == [b"00", b"01", b"02", b"03"]
    for m in got:
        s.send(R.ack_packet(R.PUBACK, m.pid))
    rest = s.recv_publishes(6, timeout=3)
    assert [m.payload for m in rest] == [b"%02d" % i for i in range(4, 10)]


def test_persistent_session_survives_many_reconnects(broker, raw):
    """Queue, deliver, ack across several short connections: nothing lost,
    nothing delivered twice once acked."""
    s = connect(raw, broker.port, "hopper", clean=False)
    s.subscribe([("hop/t", 1)])
    s.disconnect()
    p = connect(raw, broker.port, "hop-pub")
    seen = []
    n = 0
    for round_ in range(5):
        for _ in range(4):
            p.publish("hop/t", b"%02d" % n, qos=1, pid=n + 1)
            n += 1
        s = connect(raw, broker.port, "hopper", clean=False)
        assert s.session_present
        seen += [m.payload for m in s.recv_publishes(4, timeout=3)]
        s.disconnect()
        time.sleep(0.1)
    assert seen == [b"%02d" % i for i in range(n)]


def test_takeover_redelivers_unacked_to_new_connection(broker, raw):
    a = connect(raw, broker.port, "takeover-r", clean=False)
    a.subscribe([("tr/t", 1)])
    p = connect(raw, broker.port, "tr-pub")
    p.publish("tr/t", b"unacked", qos=1)
    first = a.recv_publishes(1, ack=False)
    assert len(first) == 1
    b = connect(raw, broker.port, "takeover-r", clean=False)
    assert b.session_present
    assert a.wait_closed(5)
    got = b.recv_publishes(1, timeout=3, ack=False)
    assert [(m.payload, m.dup) for m in got] == [(b"unacked", True)]


def test_redelivery_order_inflight_then_queued(broker_factory, raw):
    """Unacked inflight messages come back first (DUP), then the queue, in
    publish order."""
    b = broker_factory(config={"max_inflight_messages": 2})
    s = connect(raw, b.port, "order", clean=False)
    s.subscribe([("order/t", 1)])
    p = connect(raw, b.port, "order-pub")
    for i in range(5):
        p.publish("order/t", b"%d" % i, qos=1, pid=i + 1)
    first = s.recv_then_quiet(2, ack=False)
    assert [m.payload for m in first] == [b"0", b"1"]
    s.close()
    time.sleep(0.2)
    s = connect(raw, b.port, "order", clean=False)
    got = s.recv_publishes(5, timeout=5)
    assert [(m.payload, m.dup) for m in got] == [
        (b"0", True), (b"1", True), (b"2", False), (b"3", False), (b"4", False)]
