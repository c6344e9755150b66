"""MQTT 5 CONNECT/CONNACK, sessions, wills and server DISCONNECTs (issue 3,
point 1): exact reason codes and properties, with paho's v5 client where it
shows them and raw packets (v5raw) where it does not."""
import threading
import time

import pytest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCodes

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only

pytestmark = ledgermq_only("MQTT 5 behaviour of ledgermqd")


class Paho5:
    """paho 1.6 MQTT 5 client: CONNACK reason/properties, messages in a list."""

    def __init__(self, port, client_id="", clean_start=True, keepalive=60, props=None,
                 will=None, will_props=None):
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        self.port = port
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.messages = []
        self.rc = self.props = self.flags = self.disc_rc = None
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = lambda c, u, m: self.messages.append(m)
        if will is not None:
            self.c.will_set(*will, properties=will_props)
        self.c.connect("127.0.0.1", port, keepalive, clean_start=clean_start,
                       properties=props)
        self.c.loop_start()
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(self, c, u, flags, rc, props):
        self.flags, self.rc, self.props = flags, rc.value, props
        self.connected.set()

    def _on_disconnect(self, c, u, rc, props=None):
        self.disc_rc = rc.value if hasattr(rc, "value") else rc
        self.disconnected.set()

    def subscribe(self, topic, qos=1):
        r, _ = self.c.subscribe(topic, qos)
        assert r == 0
        time.sleep(0.3)

    def wait_messages(self, n, timeout=5.0):
        end = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < end:
            time.sleep(0.05)
        return self.messages

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def p5():
    made = []

    def make(*a, **kw):
        c = Paho5(*a, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        try:
            c.c.loop_stop()
            c.c.socket() and c.c.socket().close()
        except Exception:
            pass


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


def sprops(**kw):
    p = Properties(PacketTypes.CONNECT)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_v5_connack_properties(broker, p5):
    c = p5(broker.port, "v5-props")
    assert c.rc == 0
    assert c.props.ReceiveMaximum == 100          # max_inflight_messages
    assert c.props.TopicAliasMaximum == 10
    assert c.props.MaximumPacketSize == 1048576   # max_packet_size
    assert not hasattr(c.props, "SubscriptionIdentifierAvailable")   # default 1
    assert not hasattr(c.props, "SharedSubscriptionAvailable")      # default 1
    assert not hasattr(c.props, "AssignedClientIdentifier")
    c.close()


def test_v5_assigned_client_identifier(broker, p5):
    c = p5(broker.port, "")
    assert c.rc == 0
    assert c.props.AssignedClientIdentifier.startswith("auto-")


def test_v5_empty_client_id_not_allowed_0x85(broker_factory, raw5):
    b = broker_factory(config={"allow_zero_length_clientid": "false"})
    s = raw5(b.port)
    ca = s.connect5("")
    assert ca.reason == 0x85 and not ca.session_present
    assert s.wait_closed()


def test_v5_not_authorized_0x87(broker_factory, raw5):
    b = broker_factory(config={"allow_anonymous": "false"})
    ca = raw5(b.port).connect5("nobody")
    assert ca.reason == 0x87


def test_v5_unknown_auth_method_0x8c(broker, raw5):
    ca = raw5(broker.port).connect5("am", cprops=V.props((V.AUTH_METHOD, "SCRAM-SHA-1")))
    assert ca.reason == 0x8C


def test_v5_other_protocol_level_refused(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("lvl6", level=6))
    assert c.expect(R.CONNACK).rc == 0x01


def test_v5_server_keep_alive(broker_factory, raw5):
    b = broker_factory(config={"max_keepalive": 30})
    ca = raw5(b.port).connect5("ka", keepalive=100)
    assert ca.reason == 0
    assert V.pget(ca.props, V.SERVER_KEEP_ALIVE) == 30
    ca = raw5(b.port).connect5("ka0", keepalive=0)
    assert V.pget(ca.props, V.SERVER_KEEP_ALIVE) == 30
    ca = raw5(b.port).connect5("ka20", keepalive=20)
    assert V.pget(ca.props, V.SERVER_KEEP_ALIVE) is None


def test_v5_keep_alive_timeout_disconnect_0x8d(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("kat", keepalive=1).reason == 0
    d = s.expect5(R.DISCONNECT, timeout=5)
    assert d.reason == 0x8D
    assert s.wait_closed()


def test_v5_session_expiry_resumes_session(broker, raw5, raw):
    s = raw5(broker.port)
    ca = s.connect5("se1", cprops=V.props((V.SESSION_EXPIRY, 60)))
    assert ca.reason == 0 and not ca.session_present
    assert s.subscribe5([("se/1", 1)]) == [1]
    s.send(V.disconnect())
    assert s.wait_closed()
    p = raw(broker.port)
    p.connect("pub-se1")
    p.publish("se/1", b"while away", qos=1, pid=1)
    s = raw5(broker.port)
    ca = s.connect5("se1", clean=False, cprops=V.props((V.SESSION_EXPIRY, 60)))
    assert ca.reason == 0 and ca.session_present
    m = s.expect5(R.PUBLISH)
    assert (m.topic, m.payload, m.qos) == ("se/1", b"while away", 1)


def test_v5_session_expiry_zero_ends_session(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("se0").reason == 0
    s.subscribe5([("se/0", 1)])
    s.send(V.disconnect())
    assert s.wait_closed()
    ca = raw5(broker.port).connect5("se0", clean=False)
    assert ca.reason == 0 and not ca.session_present


def test_v5_session_expires_after_interval(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("se2", cprops=V.props((V.SESSION_EXPIRY, 1))).reason == 0
    s.send(V.disconnect())
    assert s.wait_closed()
    time.sleep(3.5)
    ca = raw5(broker.port).connect5("se2", clean=False, cprops=V.props((V.SESSION_EXPIRY, 1)))
    assert ca.reason == 0 and not ca.session_present


def test_v5_session_never_expires(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("seinf", cprops=V.props((V.SESSION_EXPIRY, 0xFFFFFFFF))).reason == 0
    s.send(V.disconnect())
    assert s.wait_closed()
    time.sleep(2.5)
    ca = raw5(broker.port).connect5("seinf", clean=False)
    assert ca.session_present


def test_v5_session_survives_restart(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("serest", cprops=V.props((V.SESSION_EXPIRY, 300))).reason == 0
    assert s.subscribe5([("rest/1", 1)]) == [1]
    s.send(V.disconnect())
    assert s.wait_closed()
    broker.restart()
    s = raw5(broker.port)
    ca = s.connect5("serest", clean=False, cprops=V.props((V.SESSION_EXPIRY, 300)))
    assert ca.session_present


def test_v5_disconnect_sets_session_expiry_zero(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("sed", cprops=V.props((V.SESSION_EXPIRY, 60))).reason == 0
    s.send(V.disconnect(0, V.props((V.SESSION_EXPIRY, 0))))
    assert s.wait_closed()
    ca = raw5(broker.port).connect5("sed", clean=False)
    assert not ca.session_present


def test_v5_disconnect_expiry_from_zero_is_protocol_error_0x82(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("sez").reason == 0
    s.send(V.disconnect(0, V.props((V.SESSION_EXPIRY, 60))))
    d = s.expect5(R.DISCONNECT)
    assert d.reason == 0x82
    assert s.wait_closed()


def test_v5_session_taken_over_0x8e(broker, raw5):
    a = raw5(broker.port)
    assert a.connect5("tko").reason == 0
    b = raw5(broker.port)
    assert b.connect5("tko").reason == 0
    d = a.expect5(R.DISCONNECT)
    assert d.reason == 0x8E
    assert a.wait_closed()


def test_v5_will_properties_passed_through(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("will-sub")
    sub.subscribe5([("will/p", 1)])
    w = raw5(broker.port)
    wp = V.props((V.CONTENT_TYPE, "text/plain"), (V.USER, ("a", "1")), (V.USER, ("b", "2")))
    assert w.connect5("willer", will=("will/p", b"gone", 1, False), will_props=wp).reason == 0
    w.abort()
    m = sub.expect5(R.PUBLISH)
    assert m.payload == b"gone"
    assert V.pget(m.props, V.CONTENT_TYPE) == "text/plain"
    assert [v for k, v in m.props if k == V.USER] == [("a", "1"), ("b", "2")]


def test_v5_will_delay_interval(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("wd-sub")
    sub.subscribe5([("will/d", 1)])
    w = raw5(broker.port)
    assert w.connect5("wd", cprops=V.props((V.SESSION_EXPIRY, 60)),
                      will=("will/d", b"late", 1, False),
                      will_props=V.props((V.WILL_DELAY, 2))).reason == 0
    w.abort()
    t0 = time.monotonic()
    assert sub.recv5(timeout=1.0) is None   # not yet
    m = sub.expect5(R.PUBLISH, timeout=5)
    assert m.payload == b"late"
    assert time.monotonic() - t0 >= 1.0


def test_v5_will_delay_cancelled_by_resume(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("wdc-sub")
    sub.subscribe5([("will/c", 1)])
    w = raw5(broker.port)
    cp = V.props((V.SESSION_EXPIRY, 60))
    assert w.connect5("wdc", cprops=cp, will=("will/c", b"never", 1, False),
                      will_props=V.props((V.WILL_DELAY, 3))).reason == 0
    w.abort()
    time.sleep(0.5)
    w2 = raw5(broker.port)
    assert w2.connect5("wdc", clean=False, cprops=cp).session_present
    assert sub.recv5(timeout=4.5) is None


def test_v5_will_sent_at_session_end_before_delay(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("wde-sub")
    sub.subscribe5([("will/e", 1)])
    w = raw5(broker.port)
    # session expiry 0: the session ends at once, so the will goes at once
    assert w.connect5("wde", will=("will/e", b"now", 1, False),
                      will_props=V.props((V.WILL_DELAY, 30))).reason == 0
    w.abort()
    assert sub.expect5(R.PUBLISH, timeout=3).payload == b"now"


def test_v5_disconnect_with_will_0x04(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("w4-sub")
    sub.subscribe5([("will/4", 1)])
    w = raw5(broker.port)
    assert w.connect5("w4", will=("will/4", b"asked", 1, False)).reason == 0
    w.send(V.disconnect(0x04))
    assert sub.expect5(R.PUBLISH).payload == b"asked"


def test_v5_normal_disconnect_no_will(broker, raw5):
    sub = raw5(broker.port)
    sub.connect5("w0-sub")
    sub.subscribe5([("will/0", 1)])
    w = raw5(broker.port)
    assert w.connect5("w0", will=("will/0", b"no", 1, False)).reason == 0
    w.send(V.disconnect(0))
    assert sub.recv5(timeout=1.0) is None


def test_v5_paho_connect_and_user_properties(broker, p5):
    """paho's own v5 client: CONNACK 0, and user properties arrive in order."""
    sub = p5(broker.port, "paho-sub")
    sub.subscribe("paho/u", 1)
    pub = p5(broker.port, "paho-pub")
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("k1", "v1"), ("k2", "v2"), ("k1", "v3")]
    pub.c.publish("paho/u", b"x", qos=1, properties=pp)
    msgs = sub.wait_messages(1)
    assert len(msgs) == 1
    assert msgs[0].properties.UserProperty == [("k1", "v1"), ("k2", "v2"), ("k1", "v3")]
    pub.close()
    sub.close()


def test_v5_oversize_packet_disconnect_0x95(broker_factory, raw5):
    b = broker_factory(config={"max_packet_size": 1024})
    s = raw5(b.port)
    assert s.connect5("big").reason == 0
    s.send(V.publish("big/t", b"x" * 2000))
    d = s.expect5(R.DISCONNECT)
    assert d.reason == 0x95


def test_v5_malformed_packet_disconnect_0x81(broker, raw5):
    s = raw5(broker.port)
    assert s.connect5("mal").reason == 0
    s.send(V.publish("a/b", b"x", pprops=b"\x02\x7f\x00"))
    d = s.expect5(R.DISCONNECT)
    assert d.reason == 0x81
