"""MQTT 5 PUBLISH (issue 3, point 1): properties passed through, message
expiry, payload format, topic aliases, receive maximum both ways, maximum
packet size both ways. Exact bytes through v5raw."""
import time

import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only

pytestmark = ledgermq_only("MQTT 5 behaviour of ledgermqd")


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


def sub5(raw5, port, cid, filters, cprops=b"\x00"):
    s = raw5(port)
    assert s.connect5(cid, cprops=cprops).reason == 0
    assert s.subscribe5(filters) == [o & 3 for _, o in filters]
    return s


def pub5(raw5, port, cid="pub"):
    p = raw5(port)
    assert p.connect5(cid).reason == 0
    return p


def test_v5_properties_passed_through(broker, raw5):
    s = sub5(raw5, broker.port, "pp-sub", [("pp/t", 1)])
    p = pub5(raw5, broker.port)
    pp = V.props((V.PAYLOAD_FORMAT, 1), (V.CONTENT_TYPE, "application/json"),
                 (V.RESPONSE_TOPIC, "pp/reply"), (V.CORRELATION_DATA, b"\x00\x01corr"),
                 (V.USER, ("z", "1")), (V.USER, ("a", "2")), (V.USER, ("z", "3")))
    p.send(V.publish("pp/t", b'{"x":1}', qos=1, pid=7, pprops=pp))
    ack = p.expect5(R.PUBACK)
    assert ack.pid == 7 and ack.reason == 0
    m = s.expect5(R.PUBLISH)
    assert m.payload == b'{"x":1}'
    assert V.pget(m.props, V.PAYLOAD_FORMAT) == 1
    assert V.pget(m.props, V.CONTENT_TYPE) == "application/json"
    assert V.pget(m.props, V.RESPONSE_TOPIC) == "pp/reply"
    assert V.pget(m.props, V.CORRELATION_DATA) == b"\x00\x01corr"
    assert [v for k, v in m.props if k == V.USER] == [("z", "1"), ("a", "2"), ("z", "3")]


def test_v5_message_to_v311_subscriber_has_no_properties(broker, raw5, raw):
    s = raw(broker.port)
    s.connect("v4-sub")
    assert s.subscribe([("mix/t", 1)]) == [1]
    p = pub5(raw5, broker.port)
    p.send(V.publish("mix/t", b"hi", qos=1, pid=1,
                     pprops=V.props((V.USER, ("k", "v")), (V.MESSAGE_EXPIRY, 100))))
    m = s.expect(R.PUBLISH)
    assert (m.topic, m.payload) == ("mix/t", b"hi")


def test_v5_message_expiry_remaining_interval_forwarded(broker, raw5):
    cp = V.props((V.SESSION_EXPIRY, 60))
    s = sub5(raw5, broker.port, "exp-sub", [("exp/t", 1)], cprops=cp)
    s.send(V.disconnect())
    assert s.wait_closed()
    p = pub5(raw5, broker.port)
    p.send(V.publish("exp/t", b"m", qos=1, pid=1, pprops=V.props((V.MESSAGE_EXPIRY, 30))))
    p.expect5(R.PUBACK)
    time.sleep(2.2)
    s = raw5(broker.port)
    assert s.connect5("exp-sub", clean=False, cprops=cp).session_present
    m = s.expect5(R.PUBLISH)
    left = V.pget(m.props, V.MESSAGE_EXPIRY)
    assert left is not None and 25 <= left <= 28


def test_v5_expired_queued_message_not_delivered(broker, raw5):
    cp = V.props((V.SESSION_EXPIRY, 60))
    s = sub5(raw5, broker.port, "expq-sub", [("expq/t", 1)], cprops=cp)
    s.send(V.disconnect())
    assert s.wait_closed()
    p = pub5(raw5, broker.port)
    p.send(V.publish("expq/t", b"old", qos=1, pid=1, pprops=V.props((V.MESSAGE_EXPIRY, 1))))
    p.send(V.publish("expq/t", b"new", qos=1, pid=2))
    p.expect5(R.PUBACK)
    p.expect5(R.PUBACK)
    time.sleep(2.5)
    s = raw5(broker.port)
    assert s.connect5("expq-sub", clean=False, cprops=cp).session_present
    m = s.expect5(R.PUBLISH)
    assert m.payload == b"new"
    assert s.recv5(timeout=0.5) is None


def test_v5_expired_retained_message_not_delivered(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.publish("expr/t", b"soon gone", qos=1, pid=1, retain=True,
                     pprops=V.props((V.MESSAGE_EXPIRY, 1))))
    p.expect5(R.PUBACK)
    p.send(V.publish("expr/u", b"stays", qos=1, pid=2, retain=True,
                     pprops=V.props((V.MESSAGE_EXPIRY, 100))))
    p.expect5(R.PUBACK)
    time.sleep(2.5)
    s = sub5(raw5, broker.port, "expr-sub", [("expr/#", 1)])
    m = s.expect5(R.PUBLISH)
    assert m.payload == b"stays" and m.retain
    assert 95 <= V.pget(m.props, V.MESSAGE_EXPIRY) <= 100
    assert s.recv5(timeout=0.5) is None


def test_v5_payload_format_invalid_puback_0x99(broker, raw5):
    s = sub5(raw5, broker.port, "pf-sub", [("pf/t", 1)])
    p = pub5(raw5, broker.port)
    p.send(V.publish("pf/t", b"\xff\xfe", qos=1, pid=3, pprops=V.props((V.PAYLOAD_FORMAT, 1))))
    ack = p.expect5(R.PUBACK)
    assert ack.pid == 3 and ack.reason == 0x99
    p.send(V.publish("pf/t", b"\xff\xfe", qos=2, pid=4, pprops=V.props((V.PAYLOAD_FORMAT, 1))))
    rec = p.expect5(R.PUBREC)
    assert rec.pid == 4 and rec.reason == 0x99
    assert s.recv5(timeout=0.5) is None
    # format 0 (unspecified bytes) is not checked
    p.send(V.publish("pf/t", b"\xff\xfe", qos=1, pid=5, pprops=V.props((V.PAYLOAD_FORMAT, 0))))
    assert p.expect5(R.PUBACK).reason == 0
    assert s.expect5(R.PUBLISH).payload == b"\xff\xfe"


def test_v5_payload_format_invalid_qos0_disconnect_0x99(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.publish("pf/0", b"\xc0\x80", qos=0, pprops=V.props((V.PAYLOAD_FORMAT, 1))))
    assert p.expect5(R.DISCONNECT).reason == 0x99
    assert p.wait_closed()


def test_v5_inbound_topic_alias(broker, raw5):
    s = sub5(raw5, broker.port, "ta-sub", [("ta/#", 0)])
    p = pub5(raw5, broker.port)
    p.send(V.publish("ta/one", b"1", pprops=V.props((V.TOPIC_ALIAS, 3))))
    p.send(V.publish("", b"2", pprops=V.props((V.TOPIC_ALIAS, 3))))
    p.send(V.publish("ta/two", b"3", pprops=V.props((V.TOPIC_ALIAS, 3))))
    p.send(V.publish("", b"4", pprops=V.props((V.TOPIC_ALIAS, 3))))
    got = [(m.topic, m.payload) for m in (s.expect5(R.PUBLISH) for _ in range(4))]
    assert got == [("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3"), ("ta/two", b"4")]


def test_v5_topic_alias_over_maximum_0x94(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.publish("ta/x", b"1", pprops=V.props((V.TOPIC_ALIAS, 11))))
    assert p.expect5(R.DISCONNECT).reason == 0x94
    assert p.wait_closed()


def test_v5_unknown_topic_alias_0x82(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.publish("", b"1", pprops=V.props((V.TOPIC_ALIAS, 2))))
    assert p.expect5(R.DISCONNECT).reason == 0x82


def test_v5_subscription_id_from_client_0x82(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.publish("sid/x", b"1", pprops=V.props((V.SUBSCRIPTION_ID, 5))))
    assert p.expect5(R.DISCONNECT).reason == 0x82


def test_v5_receive_maximum_exceeded_0x93(broker_factory, raw5):
    b = broker_factory(config={"max_inflight_messages": 2, "max_queued_messages": 10})
    p = raw5(b.port)
    ca = p.connect5("rm")
    assert V.pget(ca.props, V.RECEIVE_MAXIMUM) == 2
    p.send(V.publish("rm/t", b"1", qos=2, pid=1))
    p.send(V.publish("rm/t", b"2", qos=2, pid=2))
    assert p.expect5(R.PUBREC).pid == 1
    assert p.expect5(R.PUBREC).pid == 2
    p.send(V.publish("rm/t", b"3", qos=2, pid=3))
    assert p.expect5(R.DISCONNECT).reason == 0x93


def test_v5_client_receive_maximum_limits_inflight(broker, raw5):
    s = sub5(raw5, broker.port, "crm-sub", [("crm/t", 1)],
             cprops=V.props((V.RECEIVE_MAXIMUM, 2)))
    p = pub5(raw5, broker.port)
    for i in range(5):
        p.send(V.publish("crm/t", b"%d" % i, qos=1, pid=i + 1))
    first = [s.expect5(R.PUBLISH) for _ in range(2)]
    assert s.recv5(timeout=0.7) is None      # window of 2 full
    s.send(V.ack(R.PUBACK, first[0].pid))
    third = s.expect5(R.PUBLISH)
    assert [m.payload for m in first + [third]] == [b"0", b"1", b"2"]


def test_v5_client_maximum_packet_size_drops(broker, raw5):
    s = sub5(raw5, broker.port, "mps-sub", [("mps/t", 1)],
             cprops=V.props((V.MAXIMUM_PACKET_SIZE, 100)))
    p = pub5(raw5, broker.port)
    p.send(V.publish("mps/t", b"B" * 200, qos=1, pid=1))
    p.send(V.publish("mps/t", b"small", qos=1, pid=2))
    assert p.expect5(R.PUBACK).reason == 0
    m = s.expect5(R.PUBLISH)
    assert m.payload == b"small"
    assert s.recv5(timeout=0.5) is None


def test_v5_pubrel_unknown_packet_id_0x92(broker, raw5):
    p = pub5(raw5, broker.port)
    p.send(V.ack(R.PUBREL, 77))
    comp = p.expect5(R.PUBCOMP)
    assert comp.pid == 77 and comp.reason == 0x92


def test_v5_pubrec_error_ends_flow(broker, raw5):
    s = sub5(raw5, broker.port, "prc-sub", [("prc/t", 2)],
             cprops=V.props((V.RECEIVE_MAXIMUM, 1)))
    p = pub5(raw5, broker.port)
    p.send(V.publish("prc/t", b"a", qos=2, pid=1))
    p.send(V.publish("prc/t", b"b", qos=2, pid=2))
    m = s.expect5(R.PUBLISH)
    s.send(V.ack(R.PUBREC, m.pid, 0x80))   # refused: no PUBREL follows
    m2 = s.expect5(R.PUBLISH)
    assert m2.payload == b"b"


def test_v5_outbound_topic_aliases(broker, raw5):
    s = sub5(raw5, broker.port, "tao-sub", [("tao/#", 0)],
             cprops=V.props((V.TOPIC_ALIAS_MAXIMUM, 2)))
    p = pub5(raw5, broker.port)
    for t in ("tao/a", "tao/a", "tao/b", "tao/b", "tao/c", "tao/a"):
        p.send(V.publish(t, t.encode()))
    got = [s.expect5(R.PUBLISH) for _ in range(6)]
    aliases = [V.pget(m.props, V.TOPIC_ALIAS) for m in got]
    topics = [m.topic for m in got]
    assert [m.payload for m in got] == [b"tao/a", b"tao/a", b"tao/b", b"tao/b", b"tao/c", b"tao/a"]
    assert all(a in (1, 2) for a in aliases)        # within the client's maximum
    assert topics == ["tao/a", "", "tao/b", "", "tao/c", "tao/a"]
    # resolve as a client would
    table = {}
    for m, a in zip(got, aliases):
        if m.topic:
            table[a] = m.topic
        assert table[a] == m.payload.decode()


def test_v5_no_outbound_aliases_without_client_maximum(broker, raw5):
    s = sub5(raw5, broker.port, "tan-sub", [("tan/#", 0)])
    p = pub5(raw5, broker.port)
    p.send(V.publish("tan/a", b"1"))
    p.send(V.publish("tan/a", b"2"))
    for _ in range(2):
        m = s.expect5(R.PUBLISH)
        assert m.topic == "tan/a" and V.pget(m.props, V.TOPIC_ALIAS) is None


@ledgermq_only("max_topic_alias is ledgermq's key")
def test_v5_max_topic_alias_from_config(broker_factory, raw5):
    """max_topic_alias 3: CONNACK announces 3, alias 3 works, alias 4 gets
    DISCONNECT 0x94; outbound aliases stay within 3 even when the client
    allows 100."""
    b = broker_factory(config={"max_topic_alias": 3})
    s = raw5(b.port)
    ack = s.connect5("mta-sub", cprops=V.props((V.TOPIC_ALIAS_MAXIMUM, 100)))
    assert ack.reason == 0 and V.pget(ack.props, V.TOPIC_ALIAS_MAXIMUM) == 3
    assert s.subscribe5([("mta/#", 0)]) == [0]
    p = pub5(raw5, b.port)
    topics = ["mta/%d" % i for i in range(6)] * 2
    p.send(V.publish("mta/0", b"x", pprops=V.props((V.TOPIC_ALIAS, 3))))
    for t in topics:
        p.send(V.publish(t, t.encode()))
    got = [s.expect5(R.PUBLISH) for _ in range(1 + len(topics))]
    aliases = {V.pget(m.props, V.TOPIC_ALIAS) for m in got} - {None}
    assert aliases and aliases <= {1, 2, 3}, aliases
    p.send(V.publish("mta/x", b"1", pprops=V.props((V.TOPIC_ALIAS, 4))))
    assert p.expect5(R.DISCONNECT).reason == 0x94
