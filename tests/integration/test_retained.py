"""Retained messages (issue 2, point 3): set, replace, delete with an empty
payload, sent on subscribe with the retain flag, live messages forwarded
without it, wildcard subscriptions get every matching retained message."""
import time


def new_sub(raw, port, cid, filters):
    s = raw(port)
    assert s.connect(cid).rc == 0
    s.subscribe(filters)
    return s


def test_retained_set_sent_on_subscribe_with_retain_flag(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/a", b"v1", qos=1, retain=True)
    s = new_sub(raw, broker.port, "rs", [("ret/a", 1)])
    got = s.recv_publishes(1)
    assert len(got) == 1
    m = got[0]
    assert (m.topic, m.payload, m.retain, m.qos) == ("ret/a", b"v1", True, 1)


def test_retained_replace(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/b", b"old", qos=1, retain=True, pid=1)
    p.publish("ret/b", b"new", qos=1, retain=True, pid=2)
    s = new_sub(raw, broker.port, "rs", [("ret/b", 1)])
    got = s.recv_then_quiet(1)
    assert [(m.payload, m.retain) for m in got] == [(b"new", True)]


def test_retained_delete_with_empty_payload(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/c", b"here", qos=1, retain=True, pid=1)
    p.publish("ret/c", b"", qos=1, retain=True, pid=2)
    s = new_sub(raw, broker.port, "rs", [("ret/c", 1)])
    assert s.recv_publishes(3, timeout=1.5) == []
    # and a new retained value after the delete is kept again
    p.publish("ret/c", b"back", qos=1, retain=True, pid=3)
    s2 = new_sub(raw, broker.port, "rs2", [("ret/c", 0)])
    assert [m.payload for m in s2.recv_publishes(1)] == [b"back"]


def test_qos0_retained_message_is_retained(broker, raw):
    p = raw(broker.port)
    p.connect("rp0")
    p.publish("ret/q0", b"zero", qos=0, retain=True)
    p.publish("ret/q0-sync", b"", qos=1)  # make sure the QoS 0 one was processed
    s = new_sub(raw, broker.port, "rs0", [("ret/q0", 2)])
    got = s.recv_publishes(1)
    assert [(m.payload, m.retain, m.qos) for m in got] == [(b"zero", True, 0)]


def test_live_messages_forwarded_without_retain_flag(broker, raw):
    s = new_sub(raw, broker.port, "live", [("ret/live", 1)])
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/live", b"now", qos=1, retain=True)
    got = s.recv_publishes(1)
    assert [(m.payload, m.retain) for m in got] == [(b"now", False)]
    # but a later subscriber gets it with the flag
    s2 = new_sub(raw, broker.port, "late", [("ret/live", 1)])
    got = s2.recv_publishes(1)
    assert [(m.payload, m.retain) for m in got] == [(b"now", True)]


def test_wildcard_subscribe_gets_all_matching_retained(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    topics = {"wr/a": b"1", "wr/b": b"2", "wr/c/d": b"3", "wr": b"4", "other/x": b"5",
              "wrx": b"6"}
    for i, (t, v) in enumerate(topics.items()):
        p.publish(t, v, qos=1, retain=True, pid=i + 1)
    s = new_sub(raw, broker.port, "wild", [("wr/#", 1)])
    got = s.recv_then_quiet(4)
    assert sorted((m.topic, m.payload) for m in got) == [
        ("wr", b"4"), ("wr/a", b"1"), ("wr/b", b"2"), ("wr/c/d", b"3")]
    assert all(m.retain for m in got)
    s2 = new_sub(raw, broker.port, "wild2", [("+/b", 0)])
    got = s2.recv_then_quiet(1)
    assert [(m.topic, m.retain) for m in got] == [("wr/b", True)]


def test_retained_delivered_at_min_qos(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/q", b"two", qos=2, retain=True)
    s = new_sub(raw, broker.port, "rq", [("ret/q", 1)])
    got = s.recv_publishes(1)
    assert [(m.payload, m.qos, m.retain) for m in got] == [(b"two", 1, True)]


def test_resubscribe_resends_retained(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/rs", b"again", qos=1, retain=True)
    s = new_sub(raw, broker.port, "rrs", [("ret/rs", 1)])
    assert [m.payload for m in s.recv_publishes(1)] == [b"again"]
    s.subscribe([("ret/rs", 1)], pid=2)
    got = s.recv_publishes(1)
    assert [(m.payload, m.retain) for m in got] == [(b"again", True)]


def test_paho_retained(broker, clients):
    p = clients(broker.port)
    p.publish("pr/t", b"kept", qos=1, retain=True)
    s = clients(broker.port)
    s.subscribe("pr/#", 1)
    m = s.get()
    assert m is not None and m.payload == b"kept" and m.retain


def test_reconnect_without_subscribe_does_not_resend_retained(broker, raw):
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/once", b"r", qos=1, retain=True)
    s = new_sub(raw, broker.port, "ret-persist", [("ret/once", 1)])
    assert [m.payload for m in s.recv_publishes(1)] == [b"r"]
    s.disconnect()
    time.sleep(0.2)
    s = raw(broker.port)
    assert s.connect("ret-persist", clean=False).rc == 0
    assert s.recv_publishes(1, timeout=1.0) == [], "retained resent without a SUBSCRIBE"


def test_queued_retained_publish_delivered_without_retain_flag(broker, raw):
    """A retained PUBLISH queued for an offline persistent session was a
    live message for that subscription: retain flag 0 on delivery."""
    s = raw(broker.port)
    assert s.connect("ret-queued", clean=False).rc == 0
    s.subscribe([("ret/q/#", 1)])
    s.disconnect()
    time.sleep(0.2)
    p = raw(broker.port)
    p.connect("rp")
    p.publish("ret/q/x", b"while-away", qos=1, retain=True)
    s = raw(broker.port)
    assert s.connect("ret-queued", clean=False).rc == 0
    got = s.recv_then_quiet(1)
    assert [(m.payload, m.retain) for m in got] == [(b"while-away", False)]
