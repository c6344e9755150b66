"""The ledger's MQTT face (docs/FORMATS.md "Ledger topics"): the retained
signed $ledger/checkpoint, $ledger/proof and $ledger/consistency requests
(MQTT 5 request/response), their error replies, the publish and subscribe
refusals on $ledger topics, and `ledgermq receipt` / `ledgermq watch`
against a running broker. Everything the broker sends is re-verified here
in Python (hashlib + PyNaCl, RFC 9162 and C2SP signed-note, written from
the specs in test_formats_python.py), not only by our C code.

The ledger is filled offline (`ledgermq log append` on the stopped node)
before the broker starts; what needs the ledger pipeline (blocks, receipts
of committed messages, registry records over MQTT) is in
test_ledger_api_pipeline.py."""
import base64
import hashlib
import json
import os
import struct
import subprocess

import pytest

import mqttraw as R
import v5raw as V
from conftest import BUILD_DIR, free_port, ledgermq_only
from test_formats_python import (leaf_hash, node_hash, open_note, parse_checkpoint, parse_vkey,
                                 root_from_inclusion)

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")
N_RECORDS = 7

pytestmark = [ledgermq_only("the $ledger topics are ledgermq's"),
              pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built")]


def cli(*args, timeout=60, input=None):
    return subprocess.run([LEDGERMQ] + [str(a) for a in args], input=input,
                          capture_output=True, timeout=timeout)


def verify_consistency(first, second, first_root, second_root, proof):
    """RFC 9162 §2.1.4.2."""
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


@pytest.fixture
def node(broker_factory):
    """A broker whose ledger holds N_RECORDS records in 3 blocks; returns
    (broker, verifier key string, list of record bytes)."""
    b = broker_factory(start=False)
    lines = "".join("reading %d\n" % i for i in range(N_RECORDS)).encode()
    p = cli("-d", b.data_dir, "log", "append", "--topic", "meters/m1", "--batch", "3",
            input=lines)
    assert p.returncode == 0, p.stderr
    vkey = cli("-d", b.data_dir, "key", "show").stdout.decode().strip()
    recs = []
    for i in range(N_RECORDS):
        p = cli("-d", b.data_dir, "log", "get", i, "--raw")
        assert p.returncode == 0, p.stderr
        recs.append(bytes.fromhex(p.stdout.decode().strip()))
    b.start()
    return b, vkey, recs


def mth(leaves):
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def client5(port, cid):
    c = V.Client5(port)
    assert c.connect5(cid).reason == 0
    return c


def request(c, topic, payload, corr=b"c-1", resp="replies/me", pid=7):
    """Publishes a v5 request with QoS 1; returns (PUBACK reason, reply or None)."""
    c.send(V.publish(topic, payload, qos=1, pid=pid,
                     pprops=V.props((V.RESPONSE_TOPIC, resp), (V.CORRELATION_DATA, corr))))
    reason, reply = None, None
    for _ in range(4):
        p = c.recv5(timeout=5)
        assert p is not None, "no answer to the request on %s" % topic
        if p.type == R.PUBACK and p.pid == pid:
            reason = p.reason
            if reason >= 0x80:
                return reason, None
        elif p.type == R.PUBLISH:
            assert p.topic == resp
            reply = p
            if p.qos:
                c.send(V.ack(R.PUBACK, p.pid))
        if reason is not None and reply is not None:
            return reason, reply
    raise AssertionError("incomplete answer")


def check_receipt(j, vkey, recs):
    """Verifies a receipt JSON independently; returns its index."""
    name, kid, pk = parse_vkey(vkey)
    text, signed = open_note(j["checkpoint"], [(name, kid, pk)])
    origin, size, root, ext = parse_checkpoint(text)
    assert origin == name and size == j["tree_size"]
    rec = base64.b64decode(j["record"], validate=True)
    assert rec == recs[j["index"]]
    proof = [base64.b64decode(h, validate=True) for h in j["proof"]]
    assert root_from_inclusion(j["index"], size, leaf_hash(rec), proof) == root
    assert root == mth([leaf_hash(r) for r in recs[:size]])
    return j["index"]


def test_checkpoint_retained_and_signed(node):
    b, vkey, recs = node
    c = client5(b.port, "cp-reader")
    assert c.subscribe5([("$ledger/checkpoint", 1)]) == [1]
    p = c.expect5(R.PUBLISH)
    assert p.topic == "$ledger/checkpoint" and p.retain
    name, kid, pk = parse_vkey(vkey)
    text, _ = open_note(p.payload.decode(), [(name, kid, pk)])
    origin, size, root, ext = parse_checkpoint(text)
    assert size == N_RECORDS
    assert root == mth([leaf_hash(r) for r in recs])
    assert ext[0].startswith("block 2 ")


def test_wildcards_do_not_match_ledger_topics(node):
    b, _, _ = node
    c = client5(b.port, "wild")
    assert c.subscribe5([("#", 0), ("+/checkpoint", 0)]) == [0, 0]
    assert c.recv5(timeout=0.5) is None


def test_proof_by_index_is_a_verifiable_receipt(node):
    b, vkey, recs = node
    c = client5(b.port, "prover")
    c.subscribe5([("replies/me", 1)])
    for i in range(N_RECORDS):
        corr = b"corr-%d" % i
        reason, reply = request(c, "$ledger/proof", str(i), corr=corr, pid=10 + i)
        assert reason == 0
        assert V.pget(reply.props, V.CORRELATION_DATA) == corr
        assert V.pget(reply.props, V.CONTENT_TYPE) == "application/json"
        assert V.pget(reply.props, V.PAYLOAD_FORMAT) == 1
        assert check_receipt(json.loads(reply.payload), vkey, recs) == i


def test_proof_by_leaf_hash(node):
    b, vkey, recs = node
    c = client5(b.port, "hasher")
    c.subscribe5([("replies/me", 1)])
    for i in (0, 4, 6):
        reason, reply = request(c, "$ledger/proof", leaf_hash(recs[i]).hex(), pid=20 + i)
        assert reason == 0
        assert check_receipt(json.loads(reply.payload), vkey, recs) == i
    # upper-case hex is the same hash
    reason, reply = request(c, "$ledger/proof", leaf_hash(recs[2]).hex().upper(), pid=30)
    assert check_receipt(json.loads(reply.payload), vkey, recs) == 2


@pytest.mark.parametrize("query,code", [
    ("7", "not_found"),
    ("18446744073709551615", "not_found"),
    ("18446744073709551616", "bad_request"),
    ("007", "bad_request"),
    ("-1", "bad_request"),
    ("seven", "bad_request"),
    ("", "bad_request"),
    ("ab" * 32, "not_found"),
    ("zz" * 32, "bad_request"),
])
def test_proof_errors(node, query, code):
    b, _, _ = node
    c = client5(b.port, "bad-prover")
    c.subscribe5([("replies/me", 1)])
    reason, reply = request(c, "$ledger/proof", query, corr=b"x")
    assert reason == 0
    j = json.loads(reply.payload)
    assert j["error"] == code and j["reason"]
    assert V.pget(reply.props, V.CORRELATION_DATA) == b"x"


def test_consistency_proofs_verify(node):
    b, _, recs = node
    leaves = [leaf_hash(r) for r in recs]
    c = client5(b.port, "consist")
    c.subscribe5([("replies/me", 1)])
    pid = 1
    for old in range(1, N_RECORDS + 1):
        for new in range(old, N_RECORDS + 1):
            pid += 1
            reason, reply = request(c, "$ledger/consistency", "%d %d" % (old, new), pid=pid)
            assert reason == 0
            j = json.loads(reply.payload)
            assert (j["old_size"], j["new_size"]) == (old, new)
            proof = [base64.b64decode(h, validate=True) for h in j["proof"]]
            assert verify_consistency(old, new, mth(leaves[:old]), mth(leaves[:new]), proof)


@pytest.mark.parametrize("query,code", [
    ("0 5", "bad_request"),
    ("5 3", "bad_request"),
    ("3 8", "not_found"),
    ("3", "bad_request"),
    ("3 5 7", "bad_request"),
    ("-1 5", "bad_request"),
    ("a b", "bad_request"),
])
def test_consistency_errors(node, query, code):
    b, _, _ = node
    c = client5(b.port, "bad-consist")
    c.subscribe5([("replies/me", 1)])
    reason, reply = request(c, "$ledger/consistency", query)
    assert reason == 0
    assert json.loads(reply.payload)["error"] == code


def test_request_without_usable_response_topic_refused(node):
    b, _, _ = node
    c = client5(b.port, "no-resp")
    c.send(V.publish("$ledger/proof", "1", qos=1, pid=3))
    p = c.expect5(R.PUBACK)
    assert p.reason == 0x83
    # a $ response topic could forge another client's receipts topic
    c.send(V.publish("$ledger/proof", "1", qos=1, pid=4,
                     pprops=V.props((V.RESPONSE_TOPIC, "$ledger/receipts/victim"))))
    assert c.expect5(R.PUBACK).reason == 0x83
    assert c.recv5(timeout=0.3) is None


def test_reply_carries_large_correlation_data(node):
    b, vkey, recs = node
    c = client5(b.port, "big-corr")
    c.subscribe5([("replies/me", 1)])
    corr = bytes(range(256)) * 20
    reason, reply = request(c, "$ledger/proof", "2", corr=corr)
    assert reason == 0 and V.pget(reply.props, V.CORRELATION_DATA) == corr
    assert check_receipt(json.loads(reply.payload), vkey, recs) == 2


@pytest.mark.parametrize("topic", ["$ledger/checkpoint", "$ledger/blocks",
                                   "$ledger/receipts/someone", "$ledger/receipts/forger",
                                   "$ledger/anything"])
def test_publish_to_ledger_topics_refused_v5(node, topic):
    b, _, _ = node
    watcher = client5(b.port, "watcher")
    watcher.subscribe5([("$ledger/checkpoint", 0), ("$ledger/blocks", 0)])
    assert watcher.expect5(R.PUBLISH).topic == "$ledger/checkpoint"  # the retained one
    c = client5(b.port, "forger")
    c.send(V.publish(topic, "forged", qos=1, pid=5))
    assert c.expect5(R.PUBACK).reason == 0x87
    c.send(V.publish(topic, "forged", qos=2, pid=6))
    assert c.expect5(R.PUBREC).reason == 0x87
    # the refused QoS 2 flow is over: the same packet id starts a new one
    c.send(V.publish(topic, "forged", qos=2, pid=6))
    assert c.expect5(R.PUBREC).reason == 0x87
    c.send(V.publish(topic, "forged", qos=0, retain=True))
    assert watcher.recv5(timeout=0.5) is None
    assert "clients may not publish there" in b.log()
    # the retained checkpoint is still the node's
    fresh = client5(b.port, "fresh")
    fresh.subscribe5([("$ledger/checkpoint", 0)])
    assert fresh.expect5(R.PUBLISH).payload != b"forged"


def test_publish_to_ledger_topics_dropped_v311(node, raw):
    b, _, _ = node
    watcher = client5(b.port, "watcher")
    watcher.subscribe5([("$ledger/checkpoint", 0), ("$ledger/blocks", 0)])
    watcher.expect5(R.PUBLISH)
    c = raw(b.port)
    assert c.connect("old-forger").body[1] == 0
    c.publish("$ledger/blocks", b"forged", qos=1, pid=3)   # PUBACK as usual
    c.publish("$ledger/checkpoint", b"forged", qos=2, pid=4, retain=True)
    c.publish("$ledger/checkpoint", b"forged", qos=0, retain=True)
    assert watcher.recv5(timeout=0.5) is None
    assert c.is_open()
    fresh = client5(b.port, "fresh")
    fresh.subscribe5([("$ledger/checkpoint", 0)])
    assert fresh.expect5(R.PUBLISH).payload != b"forged"


def test_receipts_topic_of_another_client_refused_v5(node):
    b, _, _ = node
    c = client5(b.port, "me")
    codes = c.subscribe5([("$ledger/receipts/other", 1), ("$ledger/receipts/+", 1),
                          ("$ledger/receipts/#", 1), ("$ledger/#", 1), ("$ledger/+/other", 1),
                          ("$share/g/$ledger/receipts/other", 1), ("$ledger/receipts/me/x", 1),
                          ("$ledger/receipts/me", 1), ("$ledger/checkpoint", 0), ("$ledger/+", 0),
                          ("$ledger/+/me", 0)])
    assert codes == [0x87, 0x87, 0x87, 0x87, 0x87, 0x87, 0x87, 1, 0, 0, 0]


def test_receipts_topic_of_another_client_refused_v311(node, raw):
    b, _, _ = node
    c = raw(b.port)
    c.connect("me311")
    assert c.subscribe([("$ledger/receipts/other", 1), ("$ledger/receipts/me311", 1)]) == [0x80, 1]


def test_cli_receipt(node, tmp_path):
    b, vkey, recs = node
    broker = "127.0.0.1:%d" % b.port
    out = tmp_path / "r.json"
    p = cli("receipt", "--broker", broker, "5", "--key", vkey, "-o", out)
    assert p.returncode == 0, p.stderr
    assert b"verified: record 5" in p.stdout
    assert check_receipt(json.loads(out.read_text()), vkey, recs) == 5
    p = cli("verify-receipt", out, "--key", vkey)
    assert p.returncode == 0, p.stderr
    # by hash, to stdout
    p = cli("receipt", "--broker", broker, "--hash", leaf_hash(recs[1]).hex(), "--key", vkey)
    assert p.returncode == 0, p.stderr
    assert check_receipt(json.loads(p.stdout), vkey, recs) == 1
    # the same evidence as a C2SP tlog-proof, checked here from its spec
    tp = tmp_path / "r.tlog-proof"
    p = cli("receipt", "--broker", broker, "4", "--key", vkey, "--format", "tlog-proof", "-o", tp)
    assert p.returncode == 0, p.stderr
    head, note = tp.read_text().split("\n\n", 1)
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1" and lines[1] == "index 4"
    proof = [base64.b64decode(h, validate=True) for h in lines[2:]]
    name, kid, pk = parse_vkey(vkey)
    text, _ = open_note(note, [(name, kid, pk)])
    _, size, root, _ = parse_checkpoint(text)
    assert root_from_inclusion(4, size, leaf_hash(recs[4]), proof) == root
    # without a key: the proof is checked, the signature is said not to be
    p = cli("receipt", "--broker", broker, "2")
    assert p.returncode == 0 and b"NOT checked" in p.stderr
    # unknown record: exit 1 with the broker's reason
    p = cli("receipt", "--broker", broker, "99", "--key", vkey)
    assert p.returncode == 1 and b"not_found" in p.stderr
    # a checkpoint signed by another key: exit 1, nothing saved
    other = "ledgermq.local/default+00000000+" + base64.b64encode(b"\x01" + b"\x07" * 32).decode()
    name, _, pk = parse_vkey(vkey)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + b"\x07" * 32).digest()[:4].hex()
    other = "%s+%s+%s" % (name, kid, base64.b64encode(b"\x01" + b"\x07" * 32).decode())
    out2 = tmp_path / "r2.json"
    p = cli("receipt", "--broker", broker, "3", "--key", other, "-o", out2)
    assert p.returncode == 1 and b"NOT verified" in p.stderr
    assert not out2.exists()


def test_cli_connection_errors(node):
    b, vkey, _ = node
    port = free_port()
    p = cli("receipt", "--broker", "127.0.0.1:%d" % port, "1")
    assert p.returncode == 2
    assert (b"--broker 127.0.0.1:%d: cannot connect: Connection refused" % port) in p.stderr
    p = cli("receipt", "--broker", "nonsense", "1")
    assert p.returncode == 2 and b"expected HOST:PORT" in p.stderr
    p = cli("watch", "--broker", "127.0.0.1:%d" % b.port)
    assert p.returncode == 2 and b"--key" in p.stderr


def test_cli_watch_first_checkpoint(node):
    b, vkey, _ = node
    p = cli("watch", "--broker", "127.0.0.1:%d" % b.port, "--key", vkey, "--count", "1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().startswith("checkpoint size %d root " % N_RECORDS)
    assert b"block 2: verified, first" in p.stdout
    # an untrusted key: the checkpoint is refused loudly
    name, _, _ = parse_vkey(vkey)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + b"\x09" * 32).digest()[:4].hex()
    other = "%s+%s+%s" % (name, kid, base64.b64encode(b"\x01" + b"\x09" * 32).decode())
    p = cli("watch", "--broker", "127.0.0.1:%d" % b.port, "--key", other, "--count", "1")
    assert p.returncode == 1 and b"checkpoint NOT verified" in p.stderr


def test_cli_receipt_over_mutual_tls(broker_factory, tmp_path):
    from tlscerts import Pki
    pki = Pki(tmp_path / "pki")
    b = broker_factory(start=False, extra_lines=pki.listener_lines(cafile=True, require=True))
    p = cli("-d", b.data_dir, "log", "append", "--topic", "t", input=b"one\ntwo\n")
    assert p.returncode == 0, p.stderr
    vkey = cli("-d", b.data_dir, "key", "show").stdout.decode().strip()
    b.start()
    broker = "127.0.0.1:%d" % b.port
    p = cli("receipt", "--broker", broker, "1", "--key", vkey, "--cafile", pki.path("ca.crt"),
            "--cert", pki.path("client.crt"), "--tls-key", pki.path("client.key"))
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["index"] == 1
    # the server's certificate must chain to --cafile
    p = cli("receipt", "--broker", broker, "1", "--cafile", pki.path("otherca.crt"),
            "--cert", pki.path("client.crt"), "--tls-key", pki.path("client.key"))
    assert p.returncode == 2 and b"TLS: server certificate:" in p.stderr
    # no client certificate: the broker refuses the handshake
    p = cli("receipt", "--broker", broker, "1", "--cafile", pki.path("ca.crt"))
    assert p.returncode == 2 and b"--broker " + broker.encode() in p.stderr


def test_damaged_ledger_requests_unavailable(node):
    """A node whose ledger is damaged serves plain MQTT but no ledger: its
    requests are answered "unavailable", the $ledger topics stay closed to
    publishers, and no checkpoint is retained."""
    b, _, _ = node
    assert b.stop() == 0
    segdir = os.path.join(b.data_dir, "ledger")
    seg = sorted(f for f in os.listdir(segdir) if f.startswith("seg-"))[-1]
    with open(os.path.join(segdir, seg), "r+b") as f:
        data = f.read()
        f.seek(data.rindex(b"reading 6") + 2)
        f.write(b"X")
    b.start()
    assert b.wait_log(r"error +ledger: .*not served"), b.log()
    c = client5(b.port, "asker")
    assert c.subscribe5([("replies/me", 1), ("$ledger/checkpoint", 1)]) == [1, 1]
    for topic, payload in (("$ledger/proof", "1"), ("$ledger/consistency", "1 2"),
                           ("$ledger/admin/register", "\xa0")):
        reason, reply = request(c, topic, payload)
        assert reason == 0
        assert json.loads(reply.payload)["error"] == "unavailable"
    c.send(V.publish("$ledger/checkpoint", "forged", qos=1, pid=9, retain=True))
    assert c.expect5(R.PUBACK).reason == 0x87
    assert c.recv5(timeout=0.5) is None


# ---- ledgermq watch against a lying broker ----

def _note(name, sk, size, root):
    import nacl.signing
    text = "%s\n%d\n%s\n" % (name, size, base64.b64encode(root).decode())
    pk = bytes(sk.verify_key)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
    sig = sk.sign(text.encode()).signature
    return (text + "\n\u2014 %s %s\n" % (name, base64.b64encode(kid + sig).decode())).encode()


def _read_packet(sock):
    def exact(n):
        b = b""
        while len(b) < n:
            c = sock.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b
    first = exact(1)[0]
    n, mult = 0, 1
    while True:
        d = exact(1)[0]
        n += (d & 0x7F) * mult
        mult *= 128
        if not d & 0x80:
            break
    return first, exact(n)


@pytest.mark.parametrize("scenario", ["fork", "backwards", "bad_proof"])
def test_cli_watch_fails_loudly_on_inconsistency(scenario, tmp_path):
    """A fake MQTT 5 broker (a few lines of Python) serves two validly
    signed checkpoints that do not form one log; `ledgermq watch` must say
    INCONSISTENT and exit 1."""
    import socket
    import threading
    import nacl.signing
    sk = nacl.signing.SigningKey(b"\x05" * 32)
    name = "fake.example/log"
    pk = bytes(sk.verify_key)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4].hex()
    vkey = "%s+%s+%s" % (name, kid, base64.b64encode(b"\x01" + pk).decode())
    first = _note(name, sk, 2, b"\x01" * 32)
    second = {"fork": _note(name, sk, 2, b"\x02" * 32),
              "backwards": _note(name, sk, 1, b"\x03" * 32),
              "bad_proof": _note(name, sk, 4, b"\x04" * 32)}[scenario]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]

    def publish(sock, topic, payload, props=b"\x00"):
        body = R.mstr(topic) + props + payload
        sock.sendall(R.packet(R.PUBLISH, 0, body))

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(10)
        try:
            _read_packet(conn)                                  # CONNECT
            conn.sendall(bytes([0x20, 3, 0, 0, 0]))             # CONNACK
            while True:
                t, body = _read_packet(conn)
                if t >> 4 == R.SUBSCRIBE:
                    conn.sendall(bytes([0x90, 4]) + body[:2] + b"\x00\x01")
                    (plen,) = struct.unpack("!H", body[3:5])
                    if body[5:5 + plen] == b"$ledger/checkpoint":
                        publish(conn, "$ledger/checkpoint", first)
                        publish(conn, "$ledger/checkpoint", second)
                elif t >> 4 == R.PUBLISH:
                    (tl,) = struct.unpack("!H", body[:2])
                    pid = body[2 + tl:4 + tl]
                    props, n = V.parse_props(body[4 + tl:])
                    conn.sendall(bytes([0x40, 2]) + pid)         # PUBACK
                    reply = json.dumps({"old_size": 2, "new_size": 4, "proof": [
                        base64.b64encode(b"\x07" * 32).decode(),
                        base64.b64encode(b"\x08" * 32).decode()]}).encode()
                    publish(conn, V.pget(props, V.RESPONSE_TOPIC), reply,
                            V.props((V.CORRELATION_DATA, V.pget(props, V.CORRELATION_DATA))))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        p = cli("watch", "--broker", "127.0.0.1:%d" % port, "--key", vkey, "--count", "5",
                timeout=30)
    finally:
        srv.close()
        th.join(timeout=10)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout.decode().startswith("checkpoint size 2 ")
    assert b"INCONSISTENT" in p.stderr
    expect = {"fork": b"two checkpoints of tree size 2 with different roots",
              "backwards": b"tree size went back from 2 to 1",
              "bad_proof": b"does not extend the one at 2"}[scenario]
    assert expect in p.stderr, p.stderr


@pytest.mark.parametrize("silent_after", ["connect", "puback"])
def test_cli_timeouts_are_named(silent_after):
    """A broker that stops answering: the CLI gives up after --timeout and
    says what it was waiting for (exit 2)."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    port = srv.getsockname()[1]
    done = threading.Event()

    def serve():
        conn, _ = srv.accept()
        conn.settimeout(10)
        try:
            _read_packet(conn)                                  # CONNECT
            if silent_after == "puback":
                conn.sendall(bytes([0x20, 3, 0, 0, 0]))
                t, body = _read_packet(conn)                    # SUBSCRIBE (reply topic)
                conn.sendall(bytes([0x90, 4]) + body[:2] + b"\x00\x01")
                t, body = _read_packet(conn)                    # the request
                (tl,) = struct.unpack("!H", body[:2])
                conn.sendall(bytes([0x40, 2]) + body[2 + tl:4 + tl])
            done.wait(10)
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        p = cli("receipt", "--broker", "127.0.0.1:%d" % port, "0", "--timeout", "300", timeout=30)
    finally:
        done.set()
        srv.close()
        th.join(timeout=10)
    assert p.returncode == 2
    want = {"connect": b"no CONNACK within 300 ms",
            "puback": b"no reply to $ledger/proof within 300 ms"}[silent_after]
    assert want in p.stderr, p.stderr


def test_leaf_index_rebuild_memory_bounded(broker_factory):
    """Rebuilding the leaf-hash index of a big log does not leave the
    broker's heap sized to it: index keys are random, so a write
    transaction dirties about one B-tree page per record once the table is
    large, and LMDB keeps every dirty page it ever malloc'd on its free list
    until the environment closes. With 65536 records per transaction the
    rebuild below left 57 MB of anonymous memory (39 MB at 1M records: it
    grows with the log); with 2048 per transaction 17 MB. The
    index found by the rebuild still answers lookups by hash across its
    transactions."""
    if b"libasan" in subprocess.run(["ldd", os.path.join(BUILD_DIR, "ledgermqd")],
                                    capture_output=True).stdout:
        pytest.skip("ASan's shadow memory and quarantine inflate RSS")
    n = 1500000
    b = broker_factory(start=False)
    p = cli("-d", b.data_dir, "log", "append", "--topic", "t", "--batch", "1000", "--sync",
            "batch", input=b"".join(b"m%d\n" % i for i in range(n)), timeout=120)
    assert p.returncode == 0, p.stderr
    vkey = cli("-d", b.data_dir, "key", "show").stdout.decode().strip()
    picks = (0, 2047, 2048, 65536, n - 1)
    recs = {}
    for i in picks:
        g = cli("-d", b.data_dir, "log", "get", i, "--raw")
        assert g.returncode == 0, g.stderr
        recs[i] = bytes.fromhex(g.stdout.decode().strip())
    b.start()
    assert b.wait_log(r"leaf-hash index caught up with the log \(%d records\)" % n,
                      timeout=180), b.log()
    anon = 0
    with open("/proc/%d/status" % b.proc.pid) as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1])
    print("RssAnon after rebuilding the index of %d records: %d KiB" % (n, anon))
    assert 0 < anon < 32 * 1024, anon
    c = client5(b.port, "hasher")
    c.subscribe5([("replies/me", 1)])
    for k, i in enumerate(picks):
        reason, reply = request(c, "$ledger/proof", leaf_hash(recs[i]).hex(), pid=40 + k)
        assert reason == 0
        j = json.loads(reply.payload)
        assert j["index"] == i and base64.b64decode(j["record"]) == recs[i]
        name, kid, pk = parse_vkey(vkey)
        text, _ = open_note(j["checkpoint"], [(name, kid, pk)])
        _, size, root, _ = parse_checkpoint(text)
        assert size == n
        proof = [base64.b64decode(h, validate=True) for h in j["proof"]]
        assert root_from_inclusion(i, size, leaf_hash(recs[i]), proof) == root
