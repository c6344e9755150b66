"""Authentication at CONNECT (docs/BROKER.md "Authentication"): CWT device
tokens as the MQTT password (built here with cbor2 + PyNaCl from RFC 8392 /
RFC 9052 and docs/FORMATS.md "Device token (CWT)", independently of the C
code, and with `ledgermq token`), TLS client certificates whose key is a
registered device key, MQTT 5 enhanced authentication `ledgermq-ed25519`
(docs/FORMATS.md "ledgermq-ed25519 authentication"), username/password from
a password file, anonymous clients; each refusal with its exact CONNACK
code, one log line and the $SYS counter.

Devices are registered offline with the CLI on the broker's data dir before
it starts (`ledgermq operator keygen`, `device keygen`, `device register`,
`device revoke`), the operator key goes into the config."""
import base64
import os
import socket
import ssl
import struct
import subprocess
import time

import cbor2
import nacl.signing
import pytest

import mqttraw as R
import v5raw as V
from conftest import BUILD_DIR, ledgermq_only
from tlscerts import Pki

pytestmark = ledgermq_only("ledgermqd's authentication")

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")
ORIGIN = "ledgermq.local/default"  # the default ledger_origin: the token audience
AUTH = 15
AUTH_DATA = 0x16


def cli(*args, datadir=None, input=None, check=0):
    cmd = [LEDGERMQ] + (["-d", str(datadir)] if datadir else []) + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=120)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


class Device:
    """A device key made by `ledgermq device keygen`; .sk is PyNaCl's."""

    def __init__(self, path):
        self.path = str(path)
        p = cli("device", "keygen", "--out", path)
        lines = dict(l.split(": ", 1) for l in p.stdout.decode().splitlines())
        self.id = lines["id"]
        self.pk = base64.b64decode(lines["public"])
        seed = [l for l in open(path).read().splitlines() if l.startswith("seed ")][0]
        self.sk = nacl.signing.SigningKey(base64.b64decode(seed[5:]))
        assert bytes(self.sk.verify_key) == self.pk


def py_token(dev, aud=ORIGIN, iat=None, exp=None, cti=None, sk=None, tag61=False):
    """RFC 8392 CWT in a COSE_Sign1 (RFC 9052 4.4): protected {1: -8, 4: kid},
    claims {1 iss, 2 sub, 3 aud, 4 exp, 6 iat, 7 cti}, signature over
    Sig_structure ["Signature1", protected, h'', payload]."""
    now = int(time.time())
    iat = now if iat is None else iat
    exp = iat + 300 if exp is None else exp
    prot = cbor2.dumps({1: -8, 4: dev.id.encode()})
    claims = cbor2.dumps({1: dev.id, 2: dev.id, 3: aud, 4: exp, 6: iat,
                          7: cti if cti is not None else os.urandom(16)})
    tbs = cbor2.dumps(["Signature1", prot, b"", claims])
    sig = (sk or dev.sk).sign(tbs).signature
    msg = cbor2.CBORTag(18, [prot, {}, claims, sig])
    return cbor2.dumps(cbor2.CBORTag(61, msg) if tag61 else msg)


@pytest.fixture
def fleet(broker_factory, tmp_path):
    """A stopped broker whose data dir holds a ledger with: dev (registered),
    revoked (registered then revoked); other is a key never registered. The
    caller starts it (.start()) after adding config."""
    keys = tmp_path / "keys"
    keys.mkdir()
    op = keys / "op.key"
    vkey = cli("operator", "keygen", "--out", op, "--name", "ops").stdout.decode().strip()
    b = broker_factory(config={"operator_key": vkey, "allow_anonymous": "false"}, start=False)

    class F:
        pass
    f = F()
    f.broker, f.vkey, f.op, f.keys = b, vkey, op, keys
    f.dev = Device(keys / "dev.key")
    f.revoked = Device(keys / "revoked.key")
    f.other = Device(keys / "other.key")
    for d, name in ((f.dev, "meter-01"), (f.revoked, "meter-02")):
        cli("device", "register", "--operator-key", op, "--key", d.path, "--name", name,
            datadir=b.data_dir)
    cli("device", "revoke", "--operator-key", op, "--id", f.revoked.id, "--reason", "stolen",
        datadir=b.data_dir)
    return f


@pytest.fixture
def raw():
    made = []

    def make(port):
        c = V.Client5(port)
        made.append(c)
        return c
    yield make
    for c in made:
        c.abort()


def connect311(port, raw, client_id, username=None, password=None, dev=None):
    """3.1.1 needs a user name with a password [MQTT-3.1.2-22]: a device
    gives its id."""
    if dev is not None:
        username = dev.id
    c = raw(port)
    c.send(R.connect_packet(client_id, username=username, password=password))
    p = c.expect(R.CONNACK)
    return p.rc


def connect5_packet(client_id, username=None, password=None, cprops=b"\x00"):
    f = 0x02
    payload = R.mstr(client_id)
    if username is not None:
        f |= 0x80
        payload += R.mstr(username)
    if password is not None:
        f |= 0x40
        payload += R.mstr(password)
    body = R.mstr("MQTT") + bytes([5, f]) + struct.pack("!H", 60) + cprops
    return R.packet(R.CONNECT, 0, body + payload)


def connect5(port, raw, client_id, **kw):
    c = raw(port)
    c.send(connect5_packet(client_id, **kw))
    return c.expect5(R.CONNACK)


def refusal_logged(b, since, client_id, method, reason):
    m = b.wait_log(r"client %s from 127\.0\.0\.1:\d+: authentication refused \(method %s\): "
                   r"%s" % (client_id, method, reason), since=since)
    assert m, b.log()[since:]


# ------------------------------------------------------------------ tokens

def test_python_token_accepted(fleet, raw):
    b = fleet.broker.start()
    assert connect311(b.port, raw, "m1", dev=fleet.dev, password=py_token(fleet.dev)) == 0
    assert b.wait_log(r"client m1 from \S+: authenticated as device %s \(token\)" % fleet.dev.id)
    # tag 61 around it: also fine
    assert connect311(b.port, raw, "m2", dev=fleet.dev,
                      password=py_token(fleet.dev, tag61=True)) == 0
    # MQTT 5: no user name needed
    assert connect5(b.port, raw, "m3", password=py_token(fleet.dev)).reason == 0
    # another device's id as the user name
    since = len(b.log())
    assert connect311(b.port, raw, "m4", username=fleet.revoked.id,
                      password=py_token(fleet.dev)) == 0x04
    refusal_logged(b, since, "m4", "token", "user name is not the token's device id")


def test_cli_token_accepted(fleet, raw):
    b = fleet.broker.start()
    tok = cli("token", "--key", fleet.dev.path, "--aud", ORIGIN, "--ttl", "60").stdout
    assert tok[0] == 0xD2
    assert connect311(b.port, raw, "cli1", dev=fleet.dev, password=tok) == 0


def test_expired_token_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    now = int(time.time())
    tok = py_token(fleet.dev, iat=now - 1000, exp=now - 100)  # skew is 30 s
    assert connect311(b.port, raw, "e1", dev=fleet.dev, password=tok) == 0x04
    refusal_logged(b, since, "e1", "token", "token expired")
    assert connect5(b.port, raw, "e2", password=tok).reason == 0x86


def test_future_token_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    now = int(time.time())
    tok = py_token(fleet.dev, iat=now + 600, exp=now + 900)
    assert connect311(b.port, raw, "f1", dev=fleet.dev, password=tok) == 0x04
    refusal_logged(b, since, "f1", "token", "token not yet valid")
    assert connect5(b.port, raw, "f2", password=py_token(fleet.dev, iat=now + 600,
                                                         exp=now + 900)).reason == 0x86


def test_wrong_audience_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    assert connect311(b.port, raw, "a1", dev=fleet.dev, password=py_token(fleet.dev, aud="lmq://other")) == 4
    refusal_logged(b, since, "a1", "token", "token is for another audience")


def test_replayed_token_refused(fleet, raw):
    b = fleet.broker.start()
    tok = py_token(fleet.dev)
    assert connect311(b.port, raw, "r1", dev=fleet.dev, password=tok) == 0
    since = len(b.log())
    assert connect311(b.port, raw, "r2", dev=fleet.dev, password=tok) == 0x04
    refusal_logged(b, since, "r2", "token", "token replayed")
    # the same token wrapped in tag 61 is the same (sub, cti): still a replay
    cti = os.urandom(16)
    assert connect5(b.port, raw, "r3", password=py_token(fleet.dev, cti=cti)).reason == 0
    assert connect5(b.port, raw, "r4",
                    password=py_token(fleet.dev, cti=cti, tag61=True)).reason == 0x86


def test_forged_token_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    forged = py_token(fleet.dev, sk=fleet.other.sk)  # dev's id, another key
    assert connect311(b.port, raw, "g1", dev=fleet.dev, password=forged) == 0x04
    refusal_logged(b, since, "g1", "token", ".*signature")
    # one flipped bit in a good token's signature
    tok = bytearray(py_token(fleet.dev))
    tok[-1] ^= 1
    assert connect5(b.port, raw, "g2", password=bytes(tok)).reason == 0x86


def test_unknown_device_token_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    assert connect311(b.port, raw, "u1", dev=fleet.other, password=py_token(fleet.other)) == 0x04
    refusal_logged(b, since, "u1", "token", "unknown device")
    assert connect5(b.port, raw, "u2", password=py_token(fleet.other)).reason == 0x86


def test_revoked_device_token_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    assert connect311(b.port, raw, "v1", dev=fleet.revoked, password=py_token(fleet.revoked)) == 0x05
    refusal_logged(b, since, "v1", "token", "device revoked")
    assert connect5(b.port, raw, "v2", password=py_token(fleet.revoked)).reason == 0x87


def test_token_secret_not_logged_and_counted(fleet, raw):
    fleet.broker.config["sys_interval"] = "1"
    b = fleet.broker.start()
    bad = py_token(fleet.dev, aud="lmq://other")
    assert connect311(b.port, raw, "s1", dev=fleet.dev, password=bad) == 0x04
    assert connect311(b.port, raw, "s2") == 0x05  # anonymous not allowed
    sub = raw(b.port)
    sub.send(R.connect_packet("s3", username=fleet.dev.id, password=py_token(fleet.dev)))
    assert sub.expect(R.CONNACK).rc == 0
    sub.subscribe([("$SYS/broker/auth/refused", 0)])
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:
        p = sub.recv(timeout=3)
        if p is not None and p.type == R.PUBLISH and p.topic == "$SYS/broker/auth/refused":
            seen = int(p.payload)
            if seen == 2:
                break
    assert seen == 2
    log = b.log()
    assert bad.hex() not in log and base64.b64encode(bad).decode() not in log
    assert "authentication refused (method anonymous): no credentials" in log


def test_token_issued_before_start_refused(fleet, raw):
    """The replay cache is not persisted: a token whose iat is before the
    broker started might have been used with the previous process."""
    b = fleet.broker.start()
    since = len(b.log())
    now = int(time.time())
    tok = py_token(fleet.dev, iat=now - 120, exp=now + 120)
    assert connect311(b.port, raw, "b1", dev=fleet.dev, password=tok) == 0x04
    refusal_logged(b, since, "b1", "token", "token issued before the broker started")


# ------------------------------------------------------------ certificates

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


def ed_pub(pki):
    der = subprocess.run(["openssl", "pkey", "-in", pki.path("client_ed.key"), "-pubout",
                          "-outform", "DER"], capture_output=True, check=True, timeout=10).stdout
    return der[-32:]


def tls_connect(port, pki, cert, client_id):
    ctx = ssl.create_default_context(cafile=pki.path("ca.crt"))
    ctx.load_cert_chain(pki.path(cert + ".crt"), pki.path(cert + ".key"))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        t = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        t.sendall(R.connect_packet(client_id))
        data = b""
        while len(data) < 4:
            chunk = t.recv(4 - len(data))
            if not chunk:
                break
            data += chunk
        assert len(data) == 4 and data[0] == 0x20, data
        t.close()
        return data[3]
    finally:
        s.close()


def test_certificate_of_registered_device_accepted(fleet, pki):
    b = fleet.broker
    cli("device", "register", "--operator-key", fleet.op, "--pub", ed_pub(pki).hex(),
        "--name", "cert-dev", datadir=b.data_dir)
    b.extra_lines = pki.listener_lines(cafile=True, require=True)
    b.start()
    assert tls_connect(b.port, pki, "client_ed", "c1") == 0
    assert b.wait_log(r"client c1 from \S+: authenticated as device d-[a-z2-7]{32} "
                      r"\(certificate\)")


def test_certificate_of_unknown_key_refused(fleet, pki):
    b = fleet.broker
    b.extra_lines = pki.listener_lines(cafile=True, require=True)
    b.start()
    since = len(b.log())
    assert tls_connect(b.port, pki, "client_ed", "c2") == 0x05   # Ed25519, not registered
    refusal_logged(b, since, "c2", "certificate", "unknown device")
    assert tls_connect(b.port, pki, "client", "c3") == 0x05      # EC key: no device key
    refusal_logged(b, since, "c3", "certificate", "client certificate key is not Ed25519")


# ------------------------------------------------------- ledgermq-ed25519

def auth_packet(method, data, reason=0x18):
    return R.packet(AUTH, 0, bytes([reason]) + V.props((V.AUTH_METHOD, method), (AUTH_DATA, data)))


def ed25519_message(origin, nonce, device_id):
    """docs/FORMATS.md: "ledgermq-ed25519 v1" 0x00 || u8 len(origin) || origin
    || nonce (32) || device id (34 ASCII)."""
    o = origin.encode()
    return b"ledgermq-ed25519 v1\x00" + bytes([len(o)]) + o + nonce + device_id.encode()


def ed25519_exchange(port, raw, client_id, dev, sk=None, origin=ORIGIN):
    c = raw(port)
    c.send(V.connect(client_id, cprops=V.props((V.AUTH_METHOD, "ledgermq-ed25519"))))
    p = c.recv()
    assert p is not None and p.type == AUTH, p
    assert p.body[0] == 0x18
    props = V.parse_props(p.body[1:])[0]
    assert V.pget(props, V.AUTH_METHOD) == "ledgermq-ed25519"
    nonce = V.pget(props, AUTH_DATA)
    assert len(nonce) == 32
    sig = (sk or dev.sk).sign(ed25519_message(origin, nonce, dev.id)).signature
    c.send(auth_packet("ledgermq-ed25519", dev.id.encode() + sig))
    return c.expect5(R.CONNACK)


def test_ed25519_exchange_accepted(fleet, raw):
    b = fleet.broker.start()
    ca = ed25519_exchange(b.port, raw, "x1", fleet.dev)
    assert ca.reason == 0
    assert V.pget(ca.props, V.AUTH_METHOD) == "ledgermq-ed25519"
    assert b.wait_log(r"client x1 from \S+: authenticated as device %s \(ledgermq-ed25519\)"
                      % fleet.dev.id)


def test_ed25519_wrong_signature_refused(fleet, raw):
    b = fleet.broker.start()
    since = len(b.log())
    assert ed25519_exchange(b.port, raw, "x2", fleet.dev, sk=fleet.other.sk).reason == 0x87
    refusal_logged(b, since, "x2", "ledgermq-ed25519", "bad signature")
    # signed for another broker's origin
    assert ed25519_exchange(b.port, raw, "x3", fleet.dev, origin="lmq://other").reason == 0x87
    assert ed25519_exchange(b.port, raw, "x4", fleet.revoked).reason == 0x87
    refusal_logged(b, since, "x4", "ledgermq-ed25519", "device revoked")


def test_wrong_method_refused(fleet, raw):
    b = fleet.broker
    b.extra_lines = ["auth token,password"]
    b.start()
    since = len(b.log())
    c = raw(b.port)
    ca = c.connect5("w1", cprops=V.props((V.AUTH_METHOD, "SCRAM-SHA-1")))
    assert ca.reason == 0x8C
    refusal_logged(b, since, "w1", "enhanced", "method 'SCRAM-SHA-1' not supported")
    # ledgermq-ed25519 exists but this listener does not accept it
    ca = raw(b.port).connect5("w2", cprops=V.props((V.AUTH_METHOD, "ledgermq-ed25519")))
    assert ca.reason == 0x8C


# ------------------------------------------------------------- passwords

@pytest.fixture
def pw_broker(broker_factory, tmp_path):
    pwfile = tmp_path / "passwd"
    cli("passwd", "--file", pwfile, "alice", input=b"correct horse\n")
    cli("passwd", "--file", pwfile, "bob", input=b"battery staple\n")
    assert os.stat(pwfile).st_mode & 0o777 == 0o600
    return broker_factory(config={"password_file": pwfile, "allow_anonymous": "false"})


def test_password_good(pw_broker, raw):
    b = pw_broker
    assert connect311(b.port, raw, "p1", username="alice", password="correct horse") == 0
    assert b.wait_log(r"client p1 from \S+: authenticated as user alice \(password\)")
    assert connect5(b.port, raw, "p2", username="bob", password="battery staple").reason == 0


def test_password_bad(pw_broker, raw):
    b = pw_broker
    since = len(b.log())
    assert connect311(b.port, raw, "p3", username="alice", password="wrong") == 0x04
    refusal_logged(b, since, "p3", "password", "wrong password")
    assert connect311(b.port, raw, "p4", username="mallory", password="x") == 0x04
    refusal_logged(b, since, "p4", "password", "unknown user")
    assert connect5(b.port, raw, "p5", username="alice", password="wrong").reason == 0x86
    assert "wrong" not in b.log()[since:].replace("wrong password", "")


def test_anonymous_refused_where_not_allowed(pw_broker, raw):
    b = pw_broker
    since = len(b.log())
    assert connect311(b.port, raw, "n1") == 0x05
    refusal_logged(b, since, "n1", "anonymous", "no credentials and allow_anonymous is false")
    assert connect5(b.port, raw, "n2").reason == 0x87


def test_anonymous_allowed_on_default_listener(broker, raw):
    """make run's default: anonymous clients, and credentials nobody can
    check (no password_file) leave the client anonymous."""
    assert connect311(broker.port, raw, "d1") == 0
    assert connect311(broker.port, raw, "d2", username="u", password="p") == 0


def test_passwd_cli_replace_and_delete(tmp_path):
    f = tmp_path / "pw"
    cli("passwd", "--file", f, "carol", input=b"one\n")
    first = f.read_text()
    cli("passwd", "--file", f, "carol", input=b"two\n")
    assert f.read_text().count("carol:") == 1 and f.read_text() != first
    cli("passwd", "--file", f, "--delete", "carol")
    assert "carol:" not in f.read_text()
    assert cli("passwd", "--file", f, "--delete", "carol", check=1).returncode == 1
    assert cli("passwd", "--file", f, "bad:name", input=b"x\n", check=2).returncode == 2


def reauth_round(c, dev, sk=None, origin=ORIGIN):
    """AUTH 0x19 with ledgermq-ed25519, the broker's nonce, the signed answer;
    returns the broker's next packet (AUTH 0x00 or DISCONNECT)."""
    c.send(auth_packet("ledgermq-ed25519", b"", reason=0x19))
    p = c.recv()
    assert p is not None and p.type == AUTH and p.body[0] == 0x18, p
    nonce = V.pget(V.parse_props(p.body[1:])[0], AUTH_DATA)
    sig = (sk or dev.sk).sign(ed25519_message(origin, nonce, dev.id)).signature
    c.send(auth_packet("ledgermq-ed25519", dev.id.encode() + sig))
    p = c.recv()
    assert p is not None, "no answer to the re-authentication"
    return p


def test_ed25519_reauthentication(fleet, raw):
    """MQTT 5 4.12.1 with ledgermq-ed25519: the check runs on the worker
    pool while the session carries on; AUTH 0x00 on success, DISCONNECT 0x87
    on a bad signature."""
    b = fleet.broker.start()
    c = raw(b.port)
    c.send(V.connect("ra1", cprops=V.props((V.AUTH_METHOD, "ledgermq-ed25519"))))
    p = c.recv()
    nonce = V.pget(V.parse_props(p.body[1:])[0], AUTH_DATA)
    sig = fleet.dev.sk.sign(ed25519_message(ORIGIN, nonce, fleet.dev.id)).signature
    c.send(auth_packet("ledgermq-ed25519", fleet.dev.id.encode() + sig))
    assert c.expect5(R.CONNACK).reason == 0
    p = reauth_round(c, fleet.dev)
    assert p.type == AUTH and p.body[0] == 0x00, p
    assert b.wait_log(r"client ra1 re-authenticated as device %s" % fleet.dev.id)
    assert c.subscribe5([("t", 0)]) == [0]  # the session carries on
    since = len(b.log())
    p = reauth_round(c, fleet.dev, sk=fleet.other.sk)
    assert p.type == R.DISCONNECT and p.body[0] == 0x87, p
    assert b.wait_log(r"client ra1 from \S+: re-authentication refused \(method "
                      r"ledgermq-ed25519\): bad signature", since=since)


@pytest.mark.parametrize("line,msg", [
    ("auth token,bogus", "'auth' method 'bogus' unknown"),
    ("auth token,", "'auth' list ends with a comma"),
    ("auth", "'auth' takes one comma-separated list"),
])
def test_config_auth_key_errors(tmp_path, line, msg):
    conf = tmp_path / "ledgermq.conf"
    conf.write_text("data_dir %s\nlistener 0 127.0.0.1\n%s\n" % (tmp_path / "data", line))
    p = subprocess.run([os.path.join(BUILD_DIR, "ledgermqd"), "-c", str(conf)],
                       capture_output=True, timeout=30)
    assert p.returncode == 1
    assert ("%s:3: %s" % (conf, msg)).encode() in p.stderr, p.stderr


def test_config_auth_before_listener(tmp_path):
    conf = tmp_path / "ledgermq.conf"
    conf.write_text("auth token\n")
    p = subprocess.run([os.path.join(BUILD_DIR, "ledgermqd"), "-c", str(conf)],
                       capture_output=True, timeout=30)
    assert p.returncode == 1 and b":1: 'auth' applies to a listener" in p.stderr, p.stderr


def test_bad_password_file_stops_start(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("alice:$argon2id$v=19$m=8,t=1,p=1$x$y\nno colon here\n")
    conf = tmp_path / "ledgermq.conf"
    conf.write_text("data_dir %s\npassword_file %s\nlistener 0 127.0.0.1\n"
                    % (tmp_path / "data", pw))
    p = subprocess.run([os.path.join(BUILD_DIR, "ledgermqd"), "-c", str(conf)],
                       capture_output=True, timeout=30)
    assert p.returncode == 1 and ("%s:2:" % pw).encode() in p.stderr, p.stderr


def test_packets_behind_a_held_connect(fleet, raw):
    """CONNECT, SUBSCRIBE and PUBLISH in one write: the CONNECT is held for
    the token check (input paused); the rest is handled after the CONNACK,
    in order."""
    b = fleet.broker.start()
    c = raw(b.port)
    c.send(R.connect_packet("hold1", username=fleet.dev.id, password=py_token(fleet.dev)) +
           R.subscribe_packet(1, [("hold/t", 1)]) +
           R.publish_packet("hold/t", b"self", qos=1, pid=2))
    assert c.expect(R.CONNACK).rc == 0
    assert c.expect(R.SUBACK).codes == [1]
    got = [c.recv(), c.recv()]
    assert sorted(p.type for p in got) == [R.PUBLISH, R.PUBACK], got


def test_client_gone_during_check(pw_broker, raw):
    """A client that closes while its password is hashed on the worker pool:
    the check's completion finds it gone and only frees the job; the broker
    carries on (an ASan build checks the memory)."""
    b = pw_broker
    for i in range(5):
        c = R.RawClient(b.port)
        c.send(R.connect_packet("gone%d" % i, username="alice", password="correct horse"))
        c.abort()
    assert connect311(b.port, raw, "after", username="alice", password="correct horse") == 0
    assert b.running()


def test_sdk_smart_meter_logs_in_with_its_token(fleet, tmp_path):
    """The device SDK's token (lmq_sdk_token_make, as sdk/examples/
    smart_meter sends it with -a: user name = device id) is accepted on a
    listener that takes tokens only; its readings are acknowledged."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sdk = os.path.join(repo, "sdk")
    p = subprocess.run(["make", "-s", "-C", sdk], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    meter = os.path.join(sdk, "examples", "smart_meter")
    keyfile = str(tmp_path / "meter.key")
    p = subprocess.run([meter, "-k", keyfile, "-P"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    info = dict(l.split(" ", 1) for l in p.stdout.splitlines())
    b = fleet.broker
    cli("device", "register", "--operator-key", fleet.op, "--pub", info["public"],
        "--name", "sdk-meter", datadir=b.data_dir)
    b.extra_lines = ["auth token"]
    b.start()
    p = subprocess.run([meter, "-k", keyfile, "-n", "2", "-i", "0", "-a", ORIGIN, "-q",
                        "127.0.0.1", str(b.port), "plain/readings"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, (p.stdout, p.stderr, b.log()[-2000:])
    assert b.wait_log(r"authenticated as device %s \(token\)" % info["device"])
    # without -a: no credentials, refused on this listener
    p = subprocess.run([meter, "-k", keyfile, "-n", "1", "-i", "0", "-q",
                        "127.0.0.1", str(b.port), "plain/readings"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
