"""SUBSCRIBE/UNSUBSCRIBE (issue 2, point 3): wildcards, $-topics, invalid
filters, overlapping subscriptions, unsubscribe."""
import pytest

import mqttraw as R
from conftest import ledgermq_only


def received_topics(sub, n_expected_max=50, quiet=1.0):
    return sorted(m.topic for m in sub.recv_publishes(n_expected_max, timeout=quiet))


def publish_all(p, topics, qos=0):
    for i, t in enumerate(topics):
        p.publish(t, b"x", qos=qos, pid=i + 1)


CASES = [
    ("a/+/c", ["a/b/c", "a//c", "a/x/c"], ["a/b/d", "a/b/c/d", "a/c", "b/b/c", "a/b"]),
    ("+", ["a", "b"], ["a/b", "/a", "$x"]),
    ("+/+", ["a/b", "/a", "a/"], ["a", "a/b/c"]),
    ("a/#", ["a", "a/b", "a/b/c", "a/"], ["ab", "b/a", "b"]),
    ("#", ["a", "a/b", "/x", "b/c/d"], ["$x/y"]),
    ("a/b", ["a/b"], ["a/b/c", "a", "a/bb", "A/b"]),
    ("/+", ["/a", "/"], ["a", "a/b", "//a"]),
    ("+/x", ["a/x", "/x"], ["$test/x", "a/y", "x"]),
]


@pytest.mark.parametrize("filt,match,nomatch", CASES, ids=[c[0] for c in CASES])
def test_wildcard_matching(broker, raw, filt, match, nomatch):
    s = raw(broker.port)
    s.connect("wc-sub")
    assert s.subscribe([(filt, 0)]) == [0]
    # a control subscription proving non-matching $ topics were really routed
    p = raw(broker.port)
    p.connect("wc-pub")
    publish_all(p, [t for t in nomatch] + match, qos=1)
    s.subscribe([("sentinel/wc", 1)], pid=2)
    p.publish("sentinel/wc", b"end", qos=1, pid=99)
    got = [m.topic for m in s.recv_until_topic("sentinel/wc")]
    assert sorted(got) == sorted(match)


def test_dollar_topics_need_explicit_filter(broker, raw):
    """`#` and `+/x` do not match $-topics; `$test/#` does."""
    wild = raw(broker.port)
    wild.connect("dollar-wild")
    assert wild.subscribe([("#", 1), ("+/x", 1)]) == [1, 1]
    expl = raw(broker.port)
    expl.connect("dollar-explicit")
    assert expl.subscribe([("$test/#", 1)]) == [1]
    p = raw(broker.port)
    p.connect("dollar-pub")
    p.publish("$test/x", b"d", qos=1)
    got = expl.recv_publishes(1, timeout=3)
    assert [m.topic for m in got] == ["$test/x"], "control: $test/# got nothing"
    assert wild.recv_publishes(5, timeout=1.0) == []


def test_client_published_sys_topic_not_matched_by_wildcards(broker, raw):
    wild = raw(broker.port)
    wild.connect("sys-wild")
    assert wild.subscribe([("#", 1), ("+/x", 1), ("+/+", 1)]) == [1, 1, 1]
    expl = raw(broker.port)
    expl.connect("sys-expl")
    assert expl.subscribe([("$SYS/x", 1)]) == [1]
    p = raw(broker.port)
    p.connect("sys-pub")
    p.publish("$SYS/x", b"s", qos=1)
    control = expl.recv_publishes(1, timeout=1.5)
    assert wild.recv_publishes(5, timeout=0.5) == []
    if not control:
        pytest.skip("this broker drops client publishes to $SYS (mosquitto does)")


def test_sys_topics_not_matched_by_hash(broker_factory, raw):
    b = broker_factory(config={"sys_interval": 1})
    s = raw(b.port)
    s.connect("sys-hash")
    assert s.subscribe([("#", 0)]) == [0]
    sys = raw(b.port)
    sys.connect("sys-explicit")
    assert sys.subscribe([("$SYS/#", 0)]) == [0]
    got = sys.recv_publishes(1, timeout=3.5)
    assert got and got[0].topic.startswith("$SYS/"), "no $SYS messages with sys_interval 1"
    leaked = [m.topic for m in s.recv_publishes(50, timeout=1.5) if m.topic.startswith("$")]
    assert leaked == []


INVALID_FILTERS = ["a/#/b", "a#", "a/b#", "a/b+", "+a", "a/+b/c", "#/a", ""]


@ledgermq_only("mosquitto closes the connection instead of SUBACK 0x80")
@pytest.mark.parametrize("filt", INVALID_FILTERS)
def test_invalid_filter_suback_0x80(broker, raw, filt):
    s = raw(broker.port)
    s.connect("inv")
    codes = s.subscribe([("ok/topic", 1), (filt, 1)])
    assert codes == [1, 0x80]
    # the valid one in the same packet works
    s.send(R.publish_packet("ok/topic", b"v", qos=0))
    m = s.expect(R.PUBLISH)
    assert m.topic == "ok/topic"


def test_suback_grants_requested_qos_in_order(broker, raw):
    s = raw(broker.port)
    s.connect("grant")
    assert s.subscribe([("g/2", 2), ("g/0", 0), ("g/1", 1)], pid=321) == [2, 0, 1]


@ledgermq_only("mosquitto delivers one copy per matching subscription")
def test_overlapping_subscriptions_delivered_once_at_highest_qos(broker, raw):
    s = raw(broker.port)
    s.connect("overlap")
    assert s.subscribe([("ov/#", 0), ("ov/+", 2), ("ov/a", 1)]) == [0, 2, 1]
    p = raw(broker.port)
    p.connect("ov-pub")
    p.publish("ov/a", b"x", qos=2)
    got = s.recv_then_quiet(1)
    assert len(got) == 1, "delivered %d times" % len(got)
    assert got[0].qos == 2


@ledgermq_only("mosquitto delivers one copy per matching subscription")
def test_overlapping_subscriptions_separate_subscribes(broker, raw):
    s = raw(broker.port)
    s.connect("overlap2")
    assert s.subscribe([("ov2/#", 1)], pid=1) == [1]
    assert s.subscribe([("+/x", 0)], pid=2) == [0]
    p = raw(broker.port)
    p.connect("ov2-pub")
    p.publish("ov2/x", b"x", qos=1)
    got = s.recv_then_quiet(1)
    assert len(got) == 1 and got[0].qos == 1


def test_resubscribe_replaces_qos(broker, raw):
    s = raw(broker.port)
    s.connect("resub")
    assert s.subscribe([("rs/t", 0)], pid=1) == [0]
    assert s.subscribe([("rs/t", 2)], pid=2) == [2]
    p = raw(broker.port)
    p.connect("resub-pub")
    p.publish("rs/t", b"x", qos=2)
    got = s.recv_then_quiet(1)
    assert len(got) == 1 and got[0].qos == 2


def test_unsubscribe_stops_delivery(broker, raw):
    s = raw(broker.port)
    s.connect("unsub")
    assert s.subscribe([("u/a", 1), ("u/b", 1)]) == [1, 1]
    p = raw(broker.port)
    p.connect("unsub-pub")
    p.publish("u/a", b"1", qos=1, pid=1)
    assert [m.payload for m in s.recv_publishes(1)] == [b"1"]
    ack = s.unsubscribe(["u/a"], pid=77)
    assert ack.pid == 77 and ack.flags == 0
    p.publish("u/a", b"2", qos=1, pid=2)
    p.publish("u/b", b"3", qos=1, pid=3)
    got = s.recv_then_quiet(1)
    assert [(m.topic, m.payload) for m in got] == [("u/b", b"3")]


def test_unsubscribe_unknown_filter_still_unsuback(broker, raw):
    s = raw(broker.port)
    s.connect("unsub-unknown")
    ack = s.unsubscribe(["never/subscribed", "x/#"], pid=5)
    assert ack.pid == 5
    assert s.is_open()


def test_paho_subscribe_multiple(broker, clients):
    s = clients(broker.port)
    assert s.subscribe([("pm/a", 0), ("pm/b/#", 1), ("pm/+/c", 2)]) == [0, 1, 2]
    p = clients(broker.port)
    for t in ("pm/a", "pm/b/x", "pm/z/c", "pm/none"):
        p.publish(t, b"x", qos=1)
    got = sorted((m.topic, m.qos) for m in s.get_n(3))
    assert got == [("pm/a", 0), ("pm/b/x", 1), ("pm/z/c", 1)]
    assert s.drain(0.5) == []
