"""PUBLISH at QoS 0/1/2 in both directions with the exact ack packets,
exactly-once inbound QoS 2, QoS downgrade (issue 2, point 3)."""
import time

import pytest

import mqttraw as R


def sub_raw(raw, port, cid, filters):
    s = raw(port)
    assert s.connect(cid).rc == 0
    codes = s.subscribe(filters)
    assert codes == [q for _, q in filters]
    return s


def test_qos0_both_directions(broker, raw):
    s = sub_raw(raw, broker.port, "s0", [("q/0", 0)])
    p = raw(broker.port)
    p.connect("p0")
    p.send(R.publish_packet("q/0", b"zero", qos=0))
    m = s.expect(R.PUBLISH)
    assert (m.topic, m.payload, m.qos, m.dup, m.retain, m.pid) == ("q/0", b"zero", 0, False, False, None)
    p.expect_nothing(0.5)  # no ack for QoS 0


def test_qos1_inbound_puback_and_outbound_flow(broker, raw):
    s = sub_raw(raw, broker.port, "s1", [("q/1", 1)])
    p = raw(broker.port)
    p.connect("p1")
    p.send(R.publish_packet("q/1", b"one", qos=1, pid=4242))
    ack = p.expect(R.PUBACK)
    assert ack.pid == 4242 and ack.flags == 0 and len(ack.body) == 2

    m = s.expect(R.PUBLISH)
    assert (m.topic, m.payload, m.qos, m.dup) == ("q/1", b"one", 1, False)
    assert m.pid and m.pid != 0
    s.send(R.ack_packet(R.PUBACK, m.pid))
    s.expect_nothing(1.0)  # acked: no redelivery on the live connection
    assert s.is_open()


def test_qos2_inbound_full_flow(broker, raw):
    s = sub_raw(raw, broker.port, "s2", [("q/2", 2)])
    p = raw(broker.port)
    p.connect("p2")
    p.send(R.publish_packet("q/2", b"two", qos=2, pid=77))
    rec = p.expect(R.PUBREC)
    assert rec.pid == 77 and rec.flags == 0
    p.send(R.ack_packet(R.PUBREL, 77))
    comp = p.expect(R.PUBCOMP)
    assert comp.pid == 77 and comp.flags == 0

    got = s.recv_publishes(1, ack=False)
    assert len(got) == 1
    m = got[0]
    assert (m.topic, m.payload, m.qos, m.dup) == ("q/2", b"two", 2, False)


def test_qos2_outbound_full_flow(broker, raw):
    s = sub_raw(raw, broker.port, "s2o", [("q/2o", 2)])
    p = raw(broker.port)
    p.connect("p2o")
    p.publish("q/2o", b"two-out", qos=2, pid=9)
    m = s.expect(R.PUBLISH)
    assert m.qos == 2 and m.pid
    s.send(R.ack_packet(R.PUBREC, m.pid))
    rel = s.expect(R.PUBREL)
    assert rel.pid == m.pid
    assert rel.flags == 0x2, "PUBREL must have flags 0010"
    s.send(R.ack_packet(R.PUBCOMP, m.pid))
    s.expect_nothing(1.0)
    assert s.is_open()


def test_qos2_inbound_exactly_once_with_dup_resend(broker, raw):
    s = sub_raw(raw, broker.port, "s-eo", [("eo/#", 2)])
    p = raw(broker.port)
    p.connect("p-eo")
    p.send(R.publish_packet("eo/x", b"once", qos=2, pid=5))
    assert p.expect(R.PUBREC).pid == 5
    # resend the same message (DUP) before PUBREL (as after a lost PUBREC)
    p.send(R.publish_packet("eo/x", b"once", qos=2, pid=5, dup=True))
    assert p.expect(R.PUBREC).pid == 5
    p.send(R.ack_packet(R.PUBREL, 5))
    assert p.expect(R.PUBCOMP).pid == 5
    # PUBREL again (a lost PUBCOMP) is answered and delivers nothing
    p.send(R.ack_packet(R.PUBREL, 5))
    assert p.expect(R.PUBCOMP).pid == 5

    got = s.recv_then_quiet(1)
    assert [m.payload for m in got] == [b"once"], got

    # the packet id is free again: the same id now carries a new message
    p.publish("eo/x", b"again", qos=2, pid=5)
    got = s.recv_publishes(1, timeout=3)
    assert [m.payload for m in got] == [b"again"]


@pytest.mark.parametrize("pub_qos,sub_qos", [(0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)])
def test_delivered_at_min_of_publish_and_granted_qos(broker, raw, pub_qos, sub_qos):
    s = sub_raw(raw, broker.port, "sd", [("dg/t", sub_qos)])
    p = raw(broker.port)
    p.connect("pd")
    p.publish("dg/t", b"m", qos=pub_qos, pid=3)
    got = s.recv_publishes(1)
    assert len(got) == 1
    assert got[0].qos == min(pub_qos, sub_qos)


def test_paho_qos_1_and_2_both_directions(broker, clients):
    sub = clients(broker.port, client_id="paho-sub")
    assert sub.subscribe("pq/#", 2) == [2]
    pub = clients(broker.port, client_id="paho-pub")
    for q in (0, 1, 2):
        pub.publish("pq/%d" % q, b"payload-%d" % q, qos=q)
    got = sorted(sub.get_n(3), key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        ("pq/0", b"payload-0", 0), ("pq/1", b"payload-1", 1), ("pq/2", b"payload-2", 2)]
    assert sub.drain(0.5) == []


def test_qos1_order_preserved(broker, clients, raw):
    s = sub_raw(raw, broker.port, "ord", [("ord/t", 1)])
    pub = clients(broker.port)
    for i in range(50):
        pub.publish("ord/t", b"%03d" % i, qos=1, wait=False)
    got = s.recv_publishes(50, timeout=10)
    assert [m.payload for m in got] == [b"%03d" % i for i in range(50)]


def test_payload_sizes_preserved(broker, raw):
    s = sub_raw(raw, broker.port, "sz", [("sz/t", 1)])
    p = raw(broker.port)
    p.connect("psz")
    sizes = [0, 1, 127, 128, 16383, 16384, 200000]
    for i, n in enumerate(sizes):
        p.publish("sz/t", bytes([i % 251]) * n, qos=1, pid=i + 1)
    got = s.recv_publishes(len(sizes), timeout=10)
    assert [len(m.payload) for m in got] == sizes
    assert all(m.payload == bytes([i % 251]) * n for i, (m, n) in enumerate(zip(got, sizes)))


def test_packets_split_byte_by_byte(broker, raw):
    """A PUBLISH and a SUBSCRIBE dribbled one byte per write are framed
    correctly (TCP is a stream)."""
    s = raw(broker.port)
    s.connect("bytewise")
    for byte in R.subscribe_packet(1, [("bw/t", 1)]):
        s.send(bytes([byte]))
        time.sleep(0.002)
    assert s.expect(R.SUBACK).codes == [1]
    pkt = R.publish_packet("bw/t", b"z" * 300, qos=1, pid=9)
    for byte in pkt:
        s.send(bytes([byte]))
    assert s._expect_ack(R.PUBACK, 9)
    got = s.recv_publishes(1)
    assert [m.payload for m in got] == [b"z" * 300]


def test_many_packets_in_one_write(broker, raw):
    s = raw(broker.port)
    s.connect("coalesced")
    assert s.subscribe([("co/t", 1)]) == [1]
    blob = b"".join(R.publish_packet("co/t", b"%03d" % i, qos=1, pid=i + 1)
                    for i in range(100)) + R.pingreq_packet()
    s.send(blob)
    pubacks, pubs, pingresp = set(), [], False
    deadline = time.monotonic() + 10
    while (len(pubacks) < 100 or len(pubs) < 100 or not pingresp) and \
            time.monotonic() < deadline:
        p = s.recv(max(0.0, deadline - time.monotonic()))
        if p is None:
            break
        if p.type == R.PUBACK:
            pubacks.add(p.pid)
        elif p.type == R.PINGRESP:
            pingresp = True
        elif p.type == R.PUBLISH:
            pubs.append(p.payload)
            s.send(R.ack_packet(R.PUBACK, p.pid))
    assert len(pubacks) == 100 and pingresp
    assert pubs == [b"%03d" % i for i in range(100)]


def test_publish_without_subscribers_is_acked(broker, raw):
    p = raw(broker.port)
    p.connect("lonely")
    p.publish("nobody/listens", b"x", qos=1, pid=1)
    p.publish("nobody/listens", b"x", qos=2, pid=2)
    assert p.is_open()


def test_empty_payload_and_utf8_topics(broker, raw):
    s = raw(broker.port)
    s.connect("utf8")
    topics = ["ünï/cödé", "📡/sensor 1", "a b/c"]
    assert s.subscribe([(t, 1) for t in topics] + [("📡/+", 1)]) == [1, 1, 1, 1]
    p = raw(broker.port)
    p.connect("utf8-pub")
    for i, t in enumerate(topics):
        p.publish(t, b"", qos=1, pid=i + 1)
    got = s.recv_publishes(3)
    assert [(m.topic, m.payload) for m in got] == [(t, b"") for t in topics]


def test_fan_out_to_many_subscribers(broker, raw):
    subs = []
    for i in range(40):
        s = raw(broker.port)
        s.connect("fan%02d" % i)
        s.subscribe([("fan/#", i % 3)])
        subs.append(s)
    p = raw(broker.port)
    p.connect("fan-pub")
    p.publish("fan/x", b"to-all", qos=2)
    for i, s in enumerate(subs):
        got = s.recv_publishes(1)
        assert [(m.payload, m.qos) for m in got] == [(b"to-all", i % 3)], "subscriber %d" % i


def test_payload_near_max_packet_size(broker_factory, raw):
    b = broker_factory(config={"max_packet_size": 1048576})
    s = raw(b.port)
    s.connect("nearmax")
    s.subscribe([("nm/t", 1)])
    p = raw(b.port)
    p.connect("nearmax-pub")
    payload = bytes(range(256)) * 4000  # 1,024,000 bytes
    p.publish("nm/t", payload, qos=1)
    got = s.recv_publishes(1, timeout=10)
    assert len(got) == 1 and got[0].payload == payload
