"""CONNECT checks (issue 2, point 3): protocol name and level, reserved
flag, client id rules, username/password flags, will flags, CONNACK codes,
session present."""
import re

import pytest

import mqttraw as R
from conftest import free_port, ledgermq_only


def assert_refused_and_closed(c, rc=None):
    """The broker closes C without accepting it (no CONNACK 0); if RC is
    given, a CONNACK with that code must come first."""
    closed = c.wait_closed(5)
    assert closed, "connection not closed; got %r" % c.seen
    accepted = [p for p in c.seen if p.type == R.CONNACK and p.rc == 0]
    assert not accepted, "bad CONNECT accepted: %r" % c.seen
    if rc is not None:
        assert c.seen and c.seen[0].type == R.CONNACK, "no CONNACK before close: %r" % c.seen
        assert c.seen[0].rc == rc, "CONNACK rc %d, want %d" % (c.seen[0].rc, rc)
        assert not c.seen[0].session_present


def test_good_connect(broker, raw):
    c = raw(broker.port)
    p = c.connect("good-client")
    assert p.rc == 0 and not p.session_present
    assert c.is_open()


def test_wrong_protocol_name_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("x", proto_name="MQTX"))
    assert_refused_and_closed(c)


@pytest.mark.parametrize("level", [3, 6, 0, 255])
def test_unsupported_level_connack_1(broker, raw, level):
    c = raw(broker.port)
    c.send(R.connect_packet("lvl%d" % level, proto_name="MQTT", level=level))
    assert_refused_and_closed(c, rc=0x01)


def test_reserved_connect_flag_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("resv", flags=0x03))  # clean session + reserved bit 0
    assert_refused_and_closed(c)


def test_zero_length_id_clean_session_accepted(broker, raw):
    c = raw(broker.port)
    p = c.connect("", clean=True)
    assert p.rc == 0
    # and it is a working session
    assert c.subscribe([("z/1", 1)]) == [1]
    c.publish("z/1", b"self", qos=1)
    got = c.recv_publishes(1)
    assert [m.payload for m in got] == [b"self"]


def test_two_zero_length_ids_are_distinct_sessions(broker, raw):
    a, b = raw(broker.port), raw(broker.port)
    assert a.connect("").rc == 0
    assert b.connect("").rc == 0
    assert a.is_open() and b.is_open(), "second empty-id client took over the first"


def test_zero_length_id_persistent_session_connack_2(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("", clean=False))
    assert_refused_and_closed(c, rc=0x02)


def test_zero_length_id_disallowed_by_config(broker_factory, raw):
    b = broker_factory(config={"allow_zero_length_clientid": "false"})
    c = raw(b.port)
    c.send(R.connect_packet("", clean=True))
    assert_refused_and_closed(c, rc=0x02)
    ok = raw(b.port)
    assert ok.connect("named").rc == 0


@ledgermq_only("mosquitto has no max_client_id_length")
def test_client_id_too_long_connack_2(broker_factory, raw):
    b = broker_factory(config={"max_client_id_length": 30})
    c = raw(b.port)
    c.send(R.connect_packet("x" * 31))
    assert_refused_and_closed(c, rc=0x02)
    ok = raw(b.port)
    assert ok.connect("y" * 30).rc == 0


def test_client_id_bad_utf8_refused(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet(b"bad\xff\xfeid"))
    assert_refused_and_closed(c)


def test_password_without_username_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("pw", password=b"secret"))  # flag 0x40 without 0x80
    assert_refused_and_closed(c)


def test_username_and_password_accepted_anonymous_listener(broker, raw):
    c = raw(broker.port)
    p = c.connect("up", username="user", password=b"pass")
    assert p.rc == 0


def test_will_qos_3_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("wq3", will=("w/t", b"x", 3, False)))
    assert_refused_and_closed(c)


def test_will_qos_without_will_flag_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("wq", flags=0x02 | (1 << 3)))  # will QoS 1, will flag 0
    assert_refused_and_closed(c)


def test_will_retain_without_will_flag_closed(broker, raw):
    c = raw(broker.port)
    c.send(R.connect_packet("wr", flags=0x02 | 0x20))  # will retain, will flag 0
    assert_refused_and_closed(c)


@pytest.mark.parametrize("first", [
    R.pingreq_packet(),
    R.publish_packet("t", b"x"),
    R.subscribe_packet(1, [("t", 0)]),
    R.disconnect_packet(),
], ids=["PINGREQ", "PUBLISH", "SUBSCRIBE", "DISCONNECT"])
def test_first_packet_not_connect_closed(broker, raw, first):
    c = raw(broker.port)
    c.send(first)
    assert c.wait_closed(5), "connection kept open after %r" % first
    assert not [p for p in c.seen if p.type in (R.PINGRESP, R.SUBACK, R.CONNACK)], c.seen


def test_second_connect_closed(broker, raw):
    c = raw(broker.port)
    assert c.connect("twice").rc == 0
    c.send(R.connect_packet("twice"))
    assert c.wait_closed(5), "second CONNECT did not close the connection"
    assert not [p for p in c.seen if p.type == R.CONNACK], c.seen


def test_session_present_flag(broker, raw):
    a = raw(broker.port)
    p = a.connect("sp-client", clean=False)
    assert p.rc == 0 and not p.session_present, "new persistent session: sp must be 0"
    a.subscribe([("sp/t", 1)])
    a.disconnect()

    b = raw(broker.port)
    p = b.connect("sp-client", clean=False)
    assert p.rc == 0 and p.session_present, "existing session: sp must be 1"
    b.disconnect()

    c = raw(broker.port)
    p = c.connect("sp-client", clean=True)
    assert p.rc == 0 and not p.session_present, "clean session: sp must be 0"
    c.disconnect()

    d = raw(broker.port)
    p = d.connect("sp-client", clean=False)
    assert not p.session_present, "clean session 1 must have discarded the old session"
    d.disconnect()


@pytest.mark.parametrize("topic", ["w/#", "w/+/x", ""], ids=["hash", "plus", "empty"])
def test_will_topic_invalid_closed(broker, raw, topic):
    c = raw(broker.port)
    c.send(R.connect_packet("badwill", will=(topic, b"x", 0, False)))
    assert_refused_and_closed(c)


def test_allow_anonymous_false_refuses_anonymous(broker_factory, raw):
    b = broker_factory(config={"allow_anonymous": "false"})
    c = raw(b.port)
    c.send(R.connect_packet("anon"))
    assert_refused_and_closed(c, rc=0x05)


@ledgermq_only("ledgermqd's log line")
@pytest.mark.parametrize("host,fmt", [("127.0.0.1", "127.0.0.1:%d"), ("::1", "[::1]:%d")],
                         ids=["ipv4", "ipv6"])
def test_connected_log_line_names_address_and_port(broker_factory, raw, host, fmt):
    """The broker keeps a client's address binary and prints it on demand:
    the log line has the client's own address and source port."""
    p6 = free_port()
    b = broker_factory(config={"log_level": "info"}, extra_lines=["listener %d ::1" % p6])
    c = raw(p6 if host == "::1" else b.port, host=host)
    assert c.connect("addr-client").rc == 0
    want = fmt % c.sock.getsockname()[1]
    assert b.wait_log(r"client addr-client connected from %s \(" % re.escape(want)), b.log()
    c.disconnect()
