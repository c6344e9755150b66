"""Shared subscriptions $share/{group}/{filter} (issue 3, point 1):
round-robin delivery to one member, redelivery of unacknowledged messages
to another member when one leaves, persistence, no retained messages."""
import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only

pytestmark = ledgermq_only("ledgermqd's shared subscriptions")


@pytest.fixture
def raw5():
    made = []

    def make(port):
        c = V.Client5(port)
        made.append(c)
        return c
    yield make
    for c in made:
        c.abort()


def member(raw5, port, cid, flt="$share/g/sh/#", qos=1, cprops=b"\x00"):
    c = raw5(port)
    assert c.connect5(cid, cprops=cprops).reason == 0
    assert c.subscribe5([(flt, qos)]) == [qos]
    return c


def drain(c, ack=True, timeout=0.7):
    got = []
    while True:
        m = c.recv5(timeout=timeout)
        if m is None:
            return got
        assert m.type == R.PUBLISH
        got.append(m)
        if ack and m.qos == 1:
            c.send(V.ack(R.PUBACK, m.pid))


def test_v5_shared_round_robin(broker, raw5):
    a = member(raw5, broker.port, "sh-a")
    b = member(raw5, broker.port, "sh-b")
    plain = member(raw5, broker.port, "sh-plain", flt="sh/#")
    p = raw5(broker.port)
    p.connect5("sh-p")
    for i in range(6):
        p.send(V.publish("sh/t", b"%d" % i, qos=1, pid=i + 1))
    ga, gb = drain(a), drain(b)
    assert len(ga) == 3 and len(gb) == 3
    assert sorted(m.payload for m in ga + gb) == [b"%d" % i for i in range(6)]
    assert len(drain(plain)) == 6          # a normal subscription gets all


def test_v5_shared_groups_independent(broker, raw5):
    a = member(raw5, broker.port, "gi-a", flt="$share/one/gi")
    b = member(raw5, broker.port, "gi-b", flt="$share/two/gi")
    p = raw5(broker.port)
    p.connect5("gi-p")
    p.send(V.publish("gi", b"x", qos=1, pid=1))
    assert len(drain(a)) == 1 and len(drain(b)) == 1


def test_v5_shared_redelivery_when_member_leaves(broker, raw5):
    a = member(raw5, broker.port, "rd-a", flt="$share/g/rd")
    b = member(raw5, broker.port, "rd-b", flt="$share/g/rd")
    p = raw5(broker.port)
    p.connect5("rd-p")
    p.send(V.publish("rd", b"first", qos=1, pid=1))
    # whoever got it does not acknowledge, and leaves (session ends)
    first = a.recv5(timeout=1.0)
    holder, other = (a, b) if first is not None else (b, a)
    if first is None:
        first = b.expect5(R.PUBLISH)
    assert first.payload == b"first"
    holder.abort()
    m = other.expect5(R.PUBLISH)
    assert m.payload == b"first"


def test_v5_shared_no_retained_on_subscribe(broker, raw5):
    p = raw5(broker.port)
    p.connect5("shr-p")
    p.send(V.publish("shr/t", b"kept", qos=1, pid=1, retain=True))
    p.expect5(R.PUBACK)
    a = member(raw5, broker.port, "shr-a", flt="$share/g/shr/t")
    assert a.recv5(timeout=0.7) is None


def test_v5_shared_no_local_is_protocol_error(broker, raw5):
    c = raw5(broker.port)
    c.connect5("shnl")
    c.send(V.subscribe(1, [("$share/g/x", 1 | 0x04)]))
    assert c.expect5(R.DISCONNECT).reason == 0x82


def test_v5_shared_unsubscribe_leaves_group(broker, raw5):
    a = member(raw5, broker.port, "shu-a", flt="$share/g/shu")
    b = member(raw5, broker.port, "shu-b", flt="$share/g/shu")
    a.send(V.unsubscribe(2, ["$share/g/shu"]))
    assert a.expect5(R.UNSUBACK).codes == [0]
    p = raw5(broker.port)
    p.connect5("shu-p")
    for i in range(3):
        p.send(V.publish("shu", b"%d" % i, qos=1, pid=i + 1))
    assert len(drain(b)) == 3 and drain(a) == []


def test_v5_shared_subscription_persists(broker, raw5):
    cp = V.props((V.SESSION_EXPIRY, 300))
    a = member(raw5, broker.port, "shp-a", flt="$share/g/shp", cprops=cp)
    a.send(V.disconnect())
    assert a.wait_closed()
    broker.restart()
    p = raw5(broker.port)
    p.connect5("shp-p")
    p.send(V.publish("shp", b"queued", qos=1, pid=1))
    p.expect5(R.PUBACK)
    a = raw5(broker.port)
    assert a.connect5("shp-a", clean=False, cprops=cp).session_present
    assert a.expect5(R.PUBLISH).payload == b"queued"


def test_v311_shared_subscription(broker, raw):
    a, b = raw(broker.port), raw(broker.port)
    a.connect("v4sh-a")
    b.connect("v4sh-b")
    assert a.subscribe([("$share/g/v4sh", 0)]) == [0]
    assert b.subscribe([("$share/g/v4sh", 0)]) == [0]
    p = raw(broker.port)
    p.connect("v4sh-p")
    for i in range(4):
        p.publish("v4sh", b"%d" % i)
    ga = [m for m in iter(lambda: a.recv(0.5), None)]
    gb = [m for m in iter(lambda: b.recv(0.5), None)]
    assert len(ga) == 2 and len(gb) == 2
