"""Access control (docs/BROKER.md "Access control", docs/FORMATS.md "ACL
file"): an acl_file in Mosquitto's style enforced on PUBLISH (MQTT 5:
PUBACK/PUBREC 0x87 with a reason string; 3.1.1: acknowledged and dropped),
on SUBSCRIBE (SUBACK 0x80 in 3.1.1, 0x87 in MQTT 5) and on delivery (read);
%c, %u and %d patterns for clients, password users and devices; reloaded on
SIGHUP (a new rule applies without a restart, a bad file keeps the rules in
force and names FILE:LINE)."""
import signal

import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only
from test_auth import Device, cli, py_token

pytestmark = ledgermq_only("ledgermqd's ACL")


ACL = """\
# anonymous clients
topic read public/#
topic deny public/secret
topic write public/in
pattern readwrite clients/%c/#
pattern read users/%u/inbox
user alice
topic readwrite alice/#
topic write public/#
device {dev}
topic write meters/readings
pattern write devices/%d/up
"""


@pytest.fixture
def acl_broker(broker_factory, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    op = keys / "op.key"
    vkey = cli("operator", "keygen", "--out", op, "--name", "ops").stdout.decode().strip()
    pw = tmp_path / "passwd"
    cli("passwd", "--file", pw, "alice", input=b"a-pass\n")
    acl = tmp_path / "acl"
    b = broker_factory(config={"operator_key": vkey, "password_file": pw, "acl_file": acl},
                       start=False)
    dev = Device(keys / "dev.key")
    cli("device", "register", "--operator-key", op, "--key", dev.path, "--name", "m",
        datadir=b.data_dir)
    acl.write_text(ACL.format(dev=dev.id))
    b.start()
    b.dev, b.acl_path = dev, acl
    return b


@pytest.fixture
def raw():
    made = []

    def make(port, client_id, v5=False, **kw):
        c = V.Client5(port)
        made.append(c)
        if v5:
            if kw:
                c.send(connect5_packet(client_id, **kw))
                assert c.expect5(R.CONNACK).reason == 0
            else:
                assert c.connect5(client_id).reason == 0
        else:
            assert c.connect(client_id, **kw).rc == 0
        return c
    yield make
    for c in made:
        c.abort()


def connect5_packet(client_id, username=None, password=None):
    import struct
    f = 0x02
    payload = R.mstr(client_id)
    if username is not None:
        f |= 0x80
        payload += R.mstr(username)
    if password is not None:
        f |= 0x40
        payload += R.mstr(password)
    body = R.mstr("MQTT") + bytes([5, f]) + struct.pack("!H", 60) + b"\x00"
    return R.packet(R.CONNECT, 0, body + payload)


def topics(c, n=0):
    """The topics of N PUBLISHes and of any more arriving within 0.7 s."""
    return sorted(p.topic for p in c.recv_then_quiet(n, timeout=5.0, quiet=0.7))


def test_publish_denied_v311_acked_and_dropped(acl_broker, raw):
    b = acl_broker
    watcher = raw(b.port, "w", username="alice", password="a-pass")
    assert watcher.subscribe([("alice/#", 1)]) == [1]
    pub = raw(b.port, "anon")
    since = len(b.log())
    pub.publish("alice/x", b"q0", qos=0)
    pub.publish("alice/x", b"q1", qos=1)     # PUBACK as usual
    pub.publish("alice/x", b"q2", qos=2)     # PUBREC, PUBREL, PUBCOMP as usual
    assert pub.is_open()
    assert topics(watcher) == []
    assert b.wait_log(r"client anon \(anonymous\): PUBLISH to 'alice/x' denied by the ACL",
                      since=since)
    # alice herself may
    watcher.publish("alice/x", b"mine", qos=1)
    assert topics(watcher, 1) == ["alice/x"]


def test_publish_denied_v5_reason_code(acl_broker, raw):
    b = acl_broker
    c = raw(b.port, "anon5", v5=True)
    c.send(V.publish("alice/x", b"q1", qos=1, pid=7))
    ack = c.expect5(R.PUBACK)
    assert (ack.pid, ack.reason) == (7, 0x87)
    assert V.pget(ack.props, V.REASON_STRING) == "not authorized by the ACL"
    c.send(V.publish("alice/x", b"q2", qos=2, pid=8))
    rec = c.expect5(R.PUBREC)
    assert (rec.pid, rec.reason) == (8, 0x87)
    # allowed topic: success
    c.send(V.publish("public/in", b"ok", qos=1, pid=9))
    ack = c.expect5(R.PUBACK)
    assert (ack.pid, ack.reason) == (9, 0)


def test_subscribe_denied_codes(acl_broker, raw):
    b = acl_broker
    c4 = raw(b.port, "s4")
    assert c4.subscribe([("alice/#", 1), ("public/#", 1), ("#", 0)]) == [0x80, 1, 0x80]
    c5 = raw(b.port, "s5", v5=True)
    assert c5.subscribe5([("alice/#", 1), ("public/a", 1), ("$share/g/alice/x", 0)]) == \
        [0x87, 1, 0x87]


def test_read_denied_on_delivery(acl_broker, raw):
    """public/# is allowed to anonymous clients but public/secret is
    denied: the subscription is granted and public/secret never delivered."""
    b = acl_broker
    sub = raw(b.port, "reader")
    assert sub.subscribe([("public/#", 0)]) == [0]
    alice = raw(b.port, "al", username="alice", password="a-pass")
    for t in ("public/secret", "public/news"):
        alice.publish(t, b"1", qos=1)
    assert topics(sub, 1) == ["public/news"]
    # the filter public/secret itself is denied at SUBSCRIBE
    assert sub.subscribe([("public/secret", 0)], pid=2) == [0x80]


def test_client_id_pattern(acl_broker, raw):
    b = acl_broker
    c1 = raw(b.port, "c1")
    assert c1.subscribe([("clients/c1/#", 1), ("clients/c2/#", 1)]) == [1, 0x80]
    c2 = raw(b.port, "c2", v5=True)
    c2.send(V.publish("clients/c1/a", b"x", qos=1, pid=3))
    assert c2.expect5(R.PUBACK).reason == 0x87
    c1.publish("clients/c1/b", b"x", qos=1)
    assert topics(c1, 1) == ["clients/c1/b"]


def test_username_pattern(acl_broker, raw):
    b = acl_broker
    alice = raw(b.port, "ua", username="alice", password="a-pass")
    assert alice.subscribe([("users/alice/inbox", 0), ("users/bob/inbox", 0)]) == [0, 0x80]
    # an anonymous client has no %u: the pattern does not apply to it
    anon = raw(b.port, "ub")
    assert anon.subscribe([("users/alice/inbox", 0)]) == [0x80]


def test_device_pattern_and_section(acl_broker, raw):
    b = acl_broker
    dev = b.dev
    d = raw(b.port, "meter", v5=True, password=py_token(dev))
    for pid, topic, want in ((1, "devices/%s/up" % dev.id, 0),
                             (2, "devices/d-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/up", 0x87),
                             (3, "meters/readings", 0),
                             (4, "alice/x", 0x87)):
        d.send(V.publish(topic, b"r", qos=1, pid=pid))
        ack = d.expect5(R.PUBACK)
        assert (ack.pid, ack.reason) == (pid, want), topic


def test_sighup_reload(acl_broker, raw):
    b = acl_broker
    c = raw(b.port, "h1", v5=True)
    assert c.subscribe5([("news/#", 0)]) == [0x87]
    since = len(b.log())
    b.acl_path.write_text(ACL.format(dev=b.dev.id) + "pattern read news/#\n")
    b.proc.send_signal(signal.SIGHUP)
    m = b.wait_log(r"SIGHUP: ACL file \S+: (\d+) rules \(was (\d+)\)", since=since)
    assert m and int(m.group(1)) == int(m.group(2)) + 1, b.log()[since:]
    n = int(m.group(1))
    assert c.subscribe5([("news/#", 0)], pid=2) == [0]
    # a broken file: the rules in force stay, the log names FILE:LINE
    since = len(b.log())
    b.acl_path.write_text("topic read x\nbogus line here\n")
    b.proc.send_signal(signal.SIGHUP)
    assert b.wait_log(r"SIGHUP: %s:2: .*; keeping the ACL in force \(%d rules\)"
                      % (str(b.acl_path), n), since=since), b.log()[since:]
    assert c.subscribe5([("news/a", 0), ("x", 0)], pid=3) == [0, 0x87]
    assert b.running()


def test_sighup_reload_password_file(acl_broker, raw, tmp_path):
    b = acl_broker
    pw = tmp_path / "passwd"
    c = V.Client5(b.port)
    try:
        c.send(connect5_packet("p1", username="carol", password="c-pass"))
        assert c.expect5(R.CONNACK).reason == 0x86
    finally:
        c.abort()
    since = len(b.log())
    cli("passwd", "--file", pw, "carol", input=b"c-pass\n")
    b.proc.send_signal(signal.SIGHUP)
    assert b.wait_log(r"SIGHUP: password file \S+: 2 users \(was 1\)", since=since)
    raw(b.port, "p2", v5=True, username="carol", password="c-pass")  # CONNACK 0 asserted


def test_will_topic_checked_at_connect(acl_broker):
    """A will the client could not publish itself refuses the connection
    (as Mosquitto): 3.1.1 CONNACK 0x05, MQTT 5 0x87."""
    b = acl_broker
    since = len(b.log())
    c = R.RawClient(b.port)
    try:
        assert c.connect("wl1", will=("alice/x", b"gone", 0, False)).rc == 0x05
    finally:
        c.abort()
    assert b.wait_log(r"client wl1 from \S+: will topic 'alice/x' denied by the ACL", since=since)
    c = V.Client5(b.port)
    try:
        c.send(V.connect("wl2", will=("alice/x", b"gone", 0, False)))
        assert c.expect5(R.CONNACK).reason == 0x87
    finally:
        c.abort()
    c = R.RawClient(b.port)
    try:
        assert c.connect("wl3", will=("public/in", b"gone", 0, False)).rc == 0
    finally:
        c.abort()


def test_sighup_bad_password_file_keeps_users(acl_broker, raw, tmp_path):
    b = acl_broker
    pw = tmp_path / "passwd"
    since = len(b.log())
    pw.write_text(pw.read_text() + "broken line without a colon\n")
    b.proc.send_signal(signal.SIGHUP)
    assert b.wait_log(r"SIGHUP: %s:2: .*; keeping the password file in force \(1 users\)"
                      % str(pw), since=since), b.log()[since:]
    raw(b.port, "kept", username="alice", password="a-pass")  # CONNACK 0 asserted


def test_denials_counted_in_sys(broker_factory, tmp_path):
    acl = tmp_path / "acl"
    acl.write_text("topic read $SYS/broker/acl/denied\n")
    b = broker_factory(config={"acl_file": acl, "sys_interval": 1})
    c = R.RawClient(b.port)
    try:
        assert c.connect("sys1").rc == 0
        assert c.subscribe([("forbidden/#", 0)]) == [0x80]     # denial 1
        c.publish("forbidden/x", b"x", qos=1)                  # denial 2 (acked, dropped)
        assert c.subscribe([("$SYS/broker/acl/denied", 0)], pid=2) == [0]
        seen = None
        for _ in range(10):
            p = c.recv(timeout=3)
            if p is not None and p.type == R.PUBLISH:
                seen = int(p.payload)
                if seen == 2:
                    break
        assert seen == 2
    finally:
        c.abort()
