"""MQTT 5 enhanced authentication framework (issue 3, point 1): CONNECT with
an Authentication Method, AUTH 0x18 exchanges, CONNACK 0x8C for an unknown
method. Uses the test-only method "ledgermq-test-echo" (src/broker/auth.c),
registered only with LEDGERMQ_TEST_AUTH_ECHO=1 in the broker's environment."""
import struct

import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only

pytestmark = ledgermq_only("ledgermqd's authentication methods")

METHOD = "ledgermq-test-echo"
AUTH = 15


def auth_packet(method, data, reason=0x18):
    pr = V.props((V.AUTH_METHOD, method), (0x16, data))
    return R.packet(AUTH, 0, bytes([reason]) + pr)


def parse_auth(p):
    assert p.type == AUTH, p
    return p.body[0], V.parse_props(p.body[1:])[0]


@pytest.fixture
def echo_broker(broker_factory, monkeypatch):
    monkeypatch.setenv("LEDGERMQ_TEST_AUTH_ECHO", "1")
    return broker_factory(config={"allow_anonymous": "false"})


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


def test_v5_auth_single_step_success(echo_broker, raw5):
    ca = raw5(echo_broker.port).connect5(
        "au1", cprops=V.props((V.AUTH_METHOD, METHOD), (0x16, b"ok")))
    assert ca.reason == 0
    assert V.pget(ca.props, V.AUTH_METHOD) == METHOD


def test_v5_auth_challenge_response(echo_broker, raw5):
    c = raw5(echo_broker.port)
    c.send(V.connect("au2", cprops=V.props((V.AUTH_METHOD, METHOD), (0x16, b"n1"))))
    reason, props = parse_auth(c.recv())
    assert reason == 0x18
    assert V.pget(props, V.AUTH_METHOD) == METHOD
    assert V.pget(props, 0x16) == b"challenge:n1"
    c.send(auth_packet(METHOD, b"response:n1"))
    ca = c.expect5(R.CONNACK)
    assert ca.reason == 0 and V.pget(ca.props, V.AUTH_METHOD) == METHOD
    assert c.subscribe5([("au/t", 0)]) == [0]          # a working session


def test_v5_auth_wrong_response_0x87(echo_broker, raw5):
    c = raw5(echo_broker.port)
    c.send(V.connect("au3", cprops=V.props((V.AUTH_METHOD, METHOD), (0x16, b"n2"))))
    parse_auth(c.recv())
    c.send(auth_packet(METHOD, b"response:wrong"))
    assert c.expect5(R.CONNACK).reason == 0x87
    assert c.wait_closed()


def test_v5_auth_other_packet_during_exchange(echo_broker, raw5):
    c = raw5(echo_broker.port)
    c.send(V.connect("au4", cprops=V.props((V.AUTH_METHOD, METHOD), (0x16, b"n3"))))
    parse_auth(c.recv())
    c.send(V.publish("x", b"y"))
    assert c.wait_closed()


def test_v5_auth_unknown_method_0x8c(echo_broker, raw5):
    ca = raw5(echo_broker.port).connect5("au5", cprops=V.props((V.AUTH_METHOD, "nope")))
    assert ca.reason == 0x8C


def test_v5_auth_test_method_off_by_default(broker, raw5):
    ca = raw5(broker.port).connect5("au6", cprops=V.props((V.AUTH_METHOD, METHOD),
                                                          (0x16, b"ok")))
    assert ca.reason == 0x8C
