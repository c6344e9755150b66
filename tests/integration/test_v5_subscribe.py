"""MQTT 5 SUBSCRIBE/UNSUBSCRIBE (issue 3, point 1): No Local, Retain As
Published, Retain Handling 0/1/2, SUBACK and UNSUBACK reason codes."""
import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only

pytestmark = ledgermq_only("MQTT 5 behaviour of ledgermqd")

NL, RAP = 0x04, 0x08


def RH(n):
    return n << 4


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


def conn(raw5, port, cid):
    c = raw5(port)
    assert c.connect5(cid).reason == 0
    return c


def test_v5_no_local(broker, raw5):
    a = conn(raw5, broker.port, "nl-a")
    assert a.subscribe5([("nl/t", 1 | NL)]) == [1]
    b = conn(raw5, broker.port, "nl-b")
    assert b.subscribe5([("nl/t", 1)]) == [1]
    a.send(V.publish("nl/t", b"from a", qos=1, pid=1))
    a.expect5(R.PUBACK)
    assert b.expect5(R.PUBLISH).payload == b"from a"
    assert a.recv5(timeout=0.5) is None      # not back to its publisher
    b.send(V.publish("nl/t", b"from b", qos=0))
    assert a.expect5(R.PUBLISH).payload == b"from b"


def test_v5_without_no_local_gets_own_messages(broker, raw5):
    a = conn(raw5, broker.port, "nl0")
    assert a.subscribe5([("nl0/t", 0)]) == [0]
    a.send(V.publish("nl0/t", b"echo"))
    assert a.expect5(R.PUBLISH).payload == b"echo"


def test_v5_retain_as_published(broker, raw5):
    rap = conn(raw5, broker.port, "rap-1")
    assert rap.subscribe5([("rap/t", RAP)]) == [0]
    plain = conn(raw5, broker.port, "rap-0")
    assert plain.subscribe5([("rap/t", 0)]) == [0]
    p = conn(raw5, broker.port, "rap-p")
    p.send(V.publish("rap/t", b"r", retain=True))
    assert rap.expect5(R.PUBLISH).retain is True
    assert plain.expect5(R.PUBLISH).retain is False


def test_v5_retain_handling(broker, raw5):
    p = conn(raw5, broker.port, "rh-p")
    p.send(V.publish("rh/t", b"kept", qos=1, pid=1, retain=True))
    p.expect5(R.PUBACK)
    s = conn(raw5, broker.port, "rh-s")
    # 0: sent at every subscribe
    assert s.subscribe5([("rh/t", RH(0))]) == [0]
    assert s.expect5(R.PUBLISH).retain
    assert s.subscribe5([("rh/t", RH(0))], pid=2) == [0]
    assert s.expect5(R.PUBLISH).retain
    # 1: only when the subscription is new
    assert s.subscribe5([("rh/t", RH(1))], pid=3) == [0]
    assert s.recv5(timeout=0.5) is None
    assert s.subscribe5([("rh/#", RH(1))], pid=4) == [0]
    assert s.expect5(R.PUBLISH).payload == b"kept"
    # 2: never
    s2 = conn(raw5, broker.port, "rh-s2")
    assert s2.subscribe5([("rh/t", RH(2))]) == [0]
    assert s2.recv5(timeout=0.5) is None


def test_v5_suback_reason_codes(broker, raw5):
    s = conn(raw5, broker.port, "sa")
    codes = s.subscribe5([("ok/0", 0), ("ok/2", 2), ("bad/#/x", 1), ("$share/g/x", 1),
                          ("$share//x", 1), ("$share/g", 1)])
    assert codes == [0, 2, 0x8F, 1, 0x8F, 0x8F]


def test_v5_suback_quota_exceeded_0x97(broker_factory, raw5):
    b = broker_factory(config={"max_subscriptions_per_client": 1})
    s = conn(raw5, b.port, "quota")
    assert s.subscribe5([("q/1", 0), ("q/2", 0), ("q/1", 1)]) == [0, 0x97, 1]


def test_v5_subscription_identifiers_overlapping(broker, raw5):
    s = conn(raw5, broker.port, "sid")
    s.send(V.subscribe(1, [("sid/+", 1)], sprops=V.props((V.SUBSCRIPTION_ID, 3))))
    assert s.expect5(R.SUBACK).codes == [1]
    s.send(V.subscribe(2, [("sid/#", 0)], sprops=V.props((V.SUBSCRIPTION_ID, 200000))))
    assert s.expect5(R.SUBACK).codes == [0]
    assert s.subscribe5([("sid/t", 0)], pid=3) == [0]          # no identifier
    p = conn(raw5, broker.port, "sid-p")
    p.send(V.publish("sid/t", b"once", qos=1, pid=1))
    m = s.expect5(R.PUBLISH)
    assert m.payload == b"once" and m.qos == 1
    assert sorted(v for k, v in m.props if k == V.SUBSCRIPTION_ID) == [3, 200000]
    assert s.recv5(timeout=0.5) is None                       # one delivery only
    p.send(V.publish("sid/a/b", b"deep", qos=0))
    m = s.expect5(R.PUBLISH)
    assert [v for k, v in m.props if k == V.SUBSCRIPTION_ID] == [200000]


def test_v5_subscription_identifier_on_retained(broker, raw5):
    p = conn(raw5, broker.port, "sidr-p")
    p.send(V.publish("sidr/t", b"r", qos=1, pid=1, retain=True))
    p.expect5(R.PUBACK)
    s = conn(raw5, broker.port, "sidr")
    s.send(V.subscribe(1, [("sidr/t", 1)], sprops=V.props((V.SUBSCRIPTION_ID, 42))))
    assert s.expect5(R.SUBACK).codes == [1]
    m = s.expect5(R.PUBLISH)
    assert m.retain and V.pget(m.props, V.SUBSCRIPTION_ID) == 42


def test_v5_unsuback_reason_codes(broker, raw5):
    s = conn(raw5, broker.port, "ua")
    assert s.subscribe5([("ua/t", 0)]) == [0]
    s.send(V.unsubscribe(9, ["ua/t", "ua/none"]))
    ua = s.expect5(R.UNSUBACK)
    assert ua.pid == 9 and ua.codes == [0x00, 0x11]


def test_v5_subscription_options_survive_restart(broker, raw5):
    cp = V.props((V.SESSION_EXPIRY, 300))
    a = raw5(broker.port)
    assert a.connect5("opt-r", cprops=cp).reason == 0
    assert a.subscribe5([("optr/t", 1 | NL)]) == [1]
    a.send(V.disconnect())
    assert a.wait_closed()
    broker.restart()
    a = raw5(broker.port)
    assert a.connect5("opt-r", clean=False, cprops=cp).session_present
    a.send(V.publish("optr/t", b"self", qos=1, pid=1))
    a.expect5(R.PUBACK)
    assert a.recv5(timeout=0.5) is None
