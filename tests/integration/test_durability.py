"""Durability (issue 2, point 4): retained messages, persistent sessions,
their subscriptions and queued/inflight QoS 1/2 messages survive a clean
restart and a kill -9; acknowledged messages are never lost; a damaged store
does not stop start-up."""
import os
import time

import pytest

import mqttraw as R
from conftest import ledgermq_only

# mosquitto only saves its database at shutdown/autosave: its kill -9
# behaviour is not ledgermq's promise, so those tests are ledgermq-only.
KILL9 = ledgermq_only("kill -9 durability is ledgermq's promise (write-ahead before the ack)")


def connect(raw, port, cid, clean=True):
    c = raw(port)
    p = c.connect(cid, clean=clean)
    assert p.rc == 0, "CONNACK %d" % p.rc
    c.session_present = p.session_present
    return c


def prepare_state(b, raw):
    """A retained message, a persistent subscriber (offline) with a QoS 1
    and a QoS 2 subscription and queued messages."""
    p = connect(raw, b.port, "dur-pub")
    p.publish("dur/retained", b"kept-value", qos=1, retain=True, pid=1)
    s = connect(raw, b.port, "dur-sub", clean=False)
    assert s.subscribe([("dur/q1/#", 1), ("dur/q2/#", 2)]) == [1, 2]
    s.disconnect()
    time.sleep(0.2)
    for i in range(5):
        p.publish("dur/q1/x", b"q1-%d" % i, qos=1, pid=10 + i)
        p.publish("dur/q2/x", b"q2-%d" % i, qos=2, pid=20 + i)
    p.disconnect()


def check_state(b, raw):
    r = connect(raw, b.port, "dur-reader")
    r.subscribe([("dur/retained", 1)])
    got = r.recv_publishes(1, timeout=3)
    assert [(m.payload, m.retain) for m in got] == [(b"kept-value", True)], \
        "retained message lost:\n" + b.all_logs()[-3000:]
    s = connect(raw, b.port, "dur-sub", clean=False)
    assert s.session_present, "persistent session lost"
    got = s.recv_publishes(10, timeout=5)
    assert sorted(m.payload for m in got) == sorted(
        [b"q1-%d" % i for i in range(5)] + [b"q2-%d" % i for i in range(5)]), \
        "queued messages lost or duplicated: %r" % got
    # subscriptions survived: live messages still routed
    p = connect(raw, b.port, "dur-pub2")
    p.publish("dur/q1/live", b"after", qos=1)
    p.publish("dur/q2/live", b"after2", qos=2, pid=2)
    got = s.recv_publishes(2, timeout=3)
    assert sorted(m.payload for m in got) == [b"after", b"after2"], "subscriptions lost"


def test_state_survives_clean_restart(broker_factory, raw):
    b = broker_factory()
    prepare_state(b, raw)
    rc = b.stop()
    assert rc == 0
    b.start()
    check_state(b, raw)


@KILL9
def test_state_survives_kill9(broker_factory, raw):
    b = broker_factory()
    prepare_state(b, raw)
    b.restart(kill9=True)
    check_state(b, raw)


@KILL9
def test_state_survives_two_kill9_in_a_row(broker_factory, raw):
    b = broker_factory()
    prepare_state(b, raw)
    b.restart(kill9=True)
    b.restart(kill9=True)
    check_state(b, raw)


@KILL9
@pytest.mark.parametrize("qos,sync", [(1, "always"), (2, "always"), (1, "batch")])
def test_acked_messages_survive_kill9(broker_factory, raw, qos, sync):
    """Publish N, wait for every PUBACK/PUBCOMP, kill -9 right away, restart:
    the persistent subscriber gets all N (store_sync batch only gives up
    power-loss safety, not process-crash safety)."""
    n = 200
    b = broker_factory(config={"store_sync": sync})
    s = connect(raw, b.port, "ack-sub", clean=False)
    s.subscribe([("ack/#", qos)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "ack-pub")
    # pipeline the publishes, then collect every ack
    for i in range(n):
        p.send(R.publish_packet("ack/t", b"m%04d" % i, qos=qos, pid=i + 1))
    acked = set()
    deadline = time.monotonic() + 20
    while len(acked) < n and time.monotonic() < deadline:
        pk = p.recv(max(0.0, deadline - time.monotonic()))
        assert pk is not None, "acks missing: %d of %d" % (len(acked), n)
        if qos == 1:
            assert pk.type == R.PUBACK
            acked.add(pk.pid)
        elif pk.type == R.PUBREC:
            p.send(R.ack_packet(R.PUBREL, pk.pid))
        else:
            assert pk.type == R.PUBCOMP
            acked.add(pk.pid)
    assert len(acked) == n
    b.restart(kill9=True)
    s = connect(raw, b.port, "ack-sub", clean=False)
    assert s.session_present
    got = s.recv_publishes(n, timeout=15)
    payloads = [m.payload for m in got]
    missing = sorted(set(b"m%04d" % i for i in range(n)) - set(payloads))
    assert not missing, "%d acknowledged messages lost after kill -9, e.g. %r" % (
        len(missing), missing[:5])
    assert len(payloads) == n, "duplicates: %d delivered for %d" % (len(payloads), n)
    assert payloads == sorted(payloads), "order not preserved"


@KILL9
def test_inflight_qos1_survives_kill9(broker_factory, raw):
    """Delivered but unacknowledged: redelivered with DUP after kill -9."""
    b = broker_factory()
    s = connect(raw, b.port, "infl-sub", clean=False)
    s.subscribe([("infl/t", 1)])
    p = connect(raw, b.port, "infl-pub")
    p.publish("infl/t", b"pending", qos=1)
    got = s.recv_publishes(1, ack=False)
    assert len(got) == 1
    b.restart(kill9=True)
    s2 = connect(raw, b.port, "infl-sub", clean=False)
    assert s2.session_present
    again = s2.recv_publishes(1, timeout=5, ack=False)
    assert [(m.payload, m.dup) for m in again] == [(b"pending", True)]


@KILL9
def test_qos2_inbound_state_survives_kill9(broker_factory, raw):
    """PUBREC sent = the broker owns the message: after kill -9 the
    publisher's PUBREL completes it and the subscriber gets it exactly once."""
    b = broker_factory()
    s = connect(raw, b.port, "q2in-sub", clean=False)
    s.subscribe([("q2in/t", 2)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "q2in-pub", clean=False)
    p.send(R.publish_packet("q2in/t", b"exactly-once", qos=2, pid=7))
    assert p.expect(R.PUBREC).pid == 7
    b.restart(kill9=True)
    p = connect(raw, b.port, "q2in-pub", clean=False)
    assert p.session_present
    p.send(R.ack_packet(R.PUBREL, 7))
    assert p.expect(R.PUBCOMP).pid == 7
    s = connect(raw, b.port, "q2in-sub", clean=False)
    got = s.recv_publishes(3, timeout=3)
    assert [m.payload for m in got] == [b"exactly-once"]


@KILL9
def test_retained_delete_survives_kill9(broker_factory, raw):
    b = broker_factory()
    p = connect(raw, b.port, "rdel")
    p.publish("rdel/t", b"v", qos=1, retain=True, pid=1)
    p.publish("rdel/t", b"", qos=1, retain=True, pid=2)
    b.restart(kill9=True)
    s = connect(raw, b.port, "rdel-sub")
    s.subscribe([("rdel/t", 1)])
    assert s.recv_publishes(1, timeout=1.5) == []


def store_file(b):
    path = os.path.join(b.data_dir, "store", "data.mdb")
    assert os.path.exists(path), "no %s (contents of data dir: %r)" % (
        path, [os.path.join(d, f) for d, _, fs in os.walk(b.data_dir) for f in fs])
    return path


def serves(b, raw):
    c = connect(raw, b.port, "after-damage")
    c.subscribe([("dmg/t", 1)])
    c.publish("dmg/t", b"works", qos=1)
    got = c.recv_publishes(1)
    return [m.payload for m in got] == [b"works"]


def damage_truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(max(4096 + 100, size // 2))


def damage_scribble(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        for off in range(0, size, 1024):
            f.seek(off)
            f.write(b"\xde\xad\xbe\xef" * 64)


def damage_zero_meta(path):
    with open(path, "r+b") as f:
        f.write(b"\0" * 8192)


@ledgermq_only("damages ledgermq's LMDB store")
@pytest.mark.parametrize("damage", [damage_truncate, damage_scribble, damage_zero_meta],
                         ids=["truncate", "scribble", "zero-meta-pages"])
def test_damaged_store_does_not_stop_startup(broker_factory, raw, damage):
    b = broker_factory()
    prepare_state(b, raw)
    assert b.stop() == 0
    damage(store_file(b))
    b.start()  # must start and listen
    assert serves(b, raw), "broker does not serve after store damage:\n" + b.log()
    log = b.log()
    assert any(w in log.lower() for w in ("warning", "error", "damage", "corrupt")), \
        "store damage not reported:\n" + log


@ledgermq_only("damages ledgermq's LMDB store")
def test_store_deleted_starts_empty(broker_factory, raw):
    b = broker_factory()
    prepare_state(b, raw)
    assert b.stop() == 0
    os.unlink(store_file(b))
    b.start()
    assert serves(b, raw)


@KILL9
def test_kill9_under_load_loses_no_acked_message(broker_factory, raw):
    """kill -9 while a publisher streams QoS 1 messages: every message whose
    PUBACK reached the publisher before the crash is delivered after it."""
    b = broker_factory()
    s = connect(raw, b.port, "load-sub", clean=False)
    s.subscribe([("load/#", 1)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "load-pub")
    total = 3000
    acked = set()
    sent = 0
    window = 200
    killed = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and sent < total:
        while sent < total and sent - len(acked) < window:
            p.send(R.publish_packet("load/t", b"L%05d" % sent, qos=1, pid=sent % 65535 + 1))
            sent += 1
        pk = p.recv(5)
        assert pk is not None
        assert pk.type == R.PUBACK
        acked.add(pk.pid - 1)
        if not killed and len(acked) >= 500:
            b.kill()  # SIGKILL with ~200 messages in flight
            killed = True
            # acks already in our socket buffer count too
            try:
                while True:
                    pk = p.recv(1)
                    if pk is None:
                        break
                    acked.add(pk.pid - 1)
            except R.Closed:
                pass
            break
    assert killed, "never reached 500 acks"
    b.start()
    s = connect(raw, b.port, "load-sub", clean=False)
    got = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ms = s.recv_publishes(1000, timeout=1.5)
        if not ms:
            break
        got |= {int(m.payload[1:]) for m in ms}
    lost = sorted(acked - got)
    assert not lost, "%d of %d acknowledged messages lost, e.g. %r" % (
        len(lost), len(acked), lost[:10])


@ledgermq_only("damages ledgermq's LMDB store")
def test_damaged_record_skipped_rest_kept(broker_factory, raw):
    """Scribble over the bytes of one retained message in the store: on
    start the damage is reported, that record is dropped (or intact), and
    every other record is kept."""
    b = broker_factory()
    p = connect(raw, b.port, "many-ret")
    for i in range(50):
        p.publish("keep/%02d" % i, b"MARKER-%02d-" % i + b"z" * 200, qos=1, retain=True,
                  pid=i + 1)
    p.disconnect()
    assert b.stop() == 0
    path = store_file(b)
    data = bytearray(open(path, "rb").read())
    target = b"MARKER-17-"
    hits = 0
    pos = data.find(target)
    while pos >= 0:
        data[pos + 20:pos + 60] = b"\x00\xff" * 20  # inside the payload
        hits += 1
        pos = data.find(target, pos + 1)
    assert hits, "payload not found in %s (compressed or elsewhere?)" % path
    open(path, "r+b").write(bytes(data))
    b.start()
    s = connect(raw, b.port, "many-ret-sub")
    s.subscribe([("keep/#", 1)])
    got = {m.topic: m.payload for m in s.recv_publishes(50, timeout=3)}
    others = {"keep/%02d" % i for i in range(50) if i != 17}
    assert others <= set(got), "intact records lost: %r" % sorted(others - set(got))
    for t, v in got.items():
        i = int(t.split("/")[1])
        assert v == b"MARKER-%02d-" % i + b"z" * 200, "damaged payload served for %s" % t
    assert "keep/17" not in got
    assert any(w in b.log().lower() for w in ("damag", "corrupt", "crc", "checksum")), \
        "damage not reported:\n" + b.log()


@KILL9
def test_outbound_qos2_awaiting_pubcomp_survives_kill9(broker_factory, raw):
    """Subscriber sent PUBREC and got PUBREL, broker killed before PUBCOMP:
    after restart the flow completes and the message is not delivered as a
    new one."""
    b = broker_factory()
    s = connect(raw, b.port, "q2out-sub", clean=False)
    s.subscribe([("q2out/t", 2)])
    p = connect(raw, b.port, "q2out-pub")
    p.publish("q2out/t", b"once-only", qos=2)
    m = s.expect(R.PUBLISH)
    s.send(R.ack_packet(R.PUBREC, m.pid))
    assert s.expect(R.PUBREL).pid == m.pid
    b.restart(kill9=True)
    s = connect(raw, b.port, "q2out-sub", clean=False)
    assert s.session_present
    pk = s.recv(5)
    assert pk is not None, "nothing resent for the QoS 2 flow after kill -9"
    if pk.type == R.PUBLISH:
        # tolerated: the PUBREL state was not yet durable; it must be the
        # same message, same packet id, DUP set (the receiver dedupes it)
        assert (pk.payload, pk.pid, pk.dup) == (b"once-only", m.pid, True), pk
        s.send(R.ack_packet(R.PUBREC, pk.pid))
        pk = s.expect(R.PUBREL)
    assert pk.type == R.PUBREL and pk.pid == m.pid, pk
    s.send(R.ack_packet(R.PUBCOMP, m.pid))
    s.expect_nothing(1.0)


def test_unsubscribe_and_session_end_are_durable(broker_factory, raw):
    """What was removed stays removed after a restart: an unsubscribed
    filter, a deleted retained message, a session ended by clean session 1."""
    b = broker_factory()
    s = connect(raw, b.port, "rm-sub", clean=False)
    s.subscribe([("rm/keep", 1), ("rm/drop", 1)])
    s.unsubscribe(["rm/drop"])
    s.disconnect()
    g = connect(raw, b.port, "gone", clean=False)
    g.subscribe([("rm/#", 1)])
    g.disconnect()
    time.sleep(0.2)
    g = connect(raw, b.port, "gone", clean=True)  # ends the persistent session
    g.disconnect()
    p = connect(raw, b.port, "rm-pub")
    p.publish("rm/ret", b"v", qos=1, retain=True, pid=1)
    p.publish("rm/ret", b"w", qos=1, retain=True, pid=2)  # replaced
    p.disconnect()
    assert b.stop() == 0
    b.start()
    p = connect(raw, b.port, "rm-pub")
    p.publish("rm/keep", b"k", qos=1, pid=1)
    p.publish("rm/drop", b"d", qos=1, pid=2)
    s = connect(raw, b.port, "rm-sub", clean=False)
    assert s.session_present
    got = s.recv_then_quiet(1)
    assert [m.topic for m in got] == ["rm/keep"], "unsubscribe not durable: %r" % got
    g = connect(raw, b.port, "gone", clean=False)
    assert not g.session_present, "session ended by clean session 1 came back"
    r = connect(raw, b.port, "rm-reader")
    r.subscribe([("rm/ret", 1)])
    assert [m.payload for m in r.recv_then_quiet(1)] == [b"w"]


@KILL9
def test_will_retain_survives_kill9(broker_factory, raw):
    b = broker_factory()
    d = raw(b.port)
    assert d.connect("will-dur2", will=("wd/status", b"offline", 1, True)).rc == 0
    d.abort()
    deadline = time.monotonic() + 5
    got = []
    n = 0
    while not got and time.monotonic() < deadline:
        n += 1
        w = connect(raw, b.port, "wd-check%d" % n)
        w.subscribe([("wd/status", 1)])
        got = w.recv_publishes(1, timeout=0.5)
        w.close()
    assert [m.payload for m in got] == [b"offline"]
    b.restart(kill9=True)
    w = connect(raw, b.port, "wd-after")
    w.subscribe([("wd/status", 1)])
    got = w.recv_publishes(1, timeout=3)
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]


def test_many_retained_messages_survive_restart(broker_factory, raw):
    b = broker_factory()
    p = connect(raw, b.port, "many")
    for i in range(1000):
        p.send(R.publish_packet("mr/%04d" % i, b"v%04d" % i, qos=1, retain=True,
                                pid=i + 1))
    acks = 0
    while acks < 1000:
        pk = p.recv(10)
        assert pk is not None and pk.type == R.PUBACK
        acks += 1
    assert b.stop() == 0
    b.start()
    s = connect(raw, b.port, "many-sub")
    s.subscribe([("mr/#", 0)])
    got = s.recv_publishes(1000, timeout=10)
    assert sorted((m.topic, m.payload) for m in got) == [
        ("mr/%04d" % i, b"v%04d" % i) for i in range(1000)]


@KILL9
def test_qos2_dup_resend_after_kill9_delivered_once(broker_factory, raw):
    """The publisher never saw the PUBREC (lost with the crash) and resends
    the PUBLISH with DUP after the restart: the broker remembers the packet
    id and the subscriber still gets the message once."""
    b = broker_factory()
    s = connect(raw, b.port, "q2dup-sub", clean=False)
    s.subscribe([("q2dup/t", 2)])
    s.disconnect()
    time.sleep(0.2)
    p = connect(raw, b.port, "q2dup-pub", clean=False)
    p.send(R.publish_packet("q2dup/t", b"just-once", qos=2, pid=11))
    assert p.expect(R.PUBREC).pid == 11
    b.restart(kill9=True)
    p = connect(raw, b.port, "q2dup-pub", clean=False)
    p.send(R.publish_packet("q2dup/t", b"just-once", qos=2, pid=11, dup=True))
    assert p.expect(R.PUBREC).pid == 11
    p.send(R.ack_packet(R.PUBREL, 11))
    assert p.expect(R.PUBCOMP).pid == 11
    s = connect(raw, b.port, "q2dup-sub", clean=False)
    got = s.recv_publishes(3, timeout=2)
    assert [m.payload for m in got] == [b"just-once"], "QoS 2 duplicate after restart: %r" % got
