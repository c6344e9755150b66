"""The $ledger topics fed by the ledger pipeline (ledgered topics committed
by the running broker): the $ledger/blocks stream, receipts on
$ledger/receipts/{client id}, the retained checkpoint following commits,
`ledgermq watch` across commits, and registry records through the broker
($ledger/admin/..., `ledgermq device ... --broker`) including refusals and
the ACL that keeps non-operators out. Receipts and block headers are
re-verified in Python (hashlib, PyNaCl, cbor2) from the specs."""
import base64
import hashlib
import json
import os
import struct
import subprocess
import time

import cbor2
import nacl.pwhash
import pytest

import mqttraw as R
import v5raw as V
from conftest import BUILD_DIR, ledgermq_only, wait_for
from test_formats_python import (leaf_hash, open_note, parse_checkpoint, parse_vkey,
                                 root_from_inclusion)

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")

pytestmark = [ledgermq_only("the $ledger topics are ledgermq's"),
              pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built")]


def cli(*args, timeout=60, input=None):
    return subprocess.run([LEDGERMQ] + [str(a) for a in args], input=input,
                          capture_output=True, timeout=timeout)


@pytest.fixture
def node(broker_factory, tmp_path):
    """A broker with an attested ledgered topic plant/# and one trusted
    operator; returns (broker, node vkey, operator key file, its vkey)."""
    opkey = tmp_path / "op.key"
    p = cli("operator", "keygen", "--out", opkey, "--name", "op-a")
    assert p.returncode == 0, p.stderr
    opv = p.stdout.decode().strip()
    b = broker_factory(config={"ledger_topic": "plant/# attested", "operator_key": opv,
                               "ledger_batch_ms": 2})
    vkey = cli("-d", b.data_dir, "key", "show").stdout.decode().strip()
    return b, vkey, opkey, opv


def client5(port, cid):
    c = V.Client5(port)
    assert c.connect5(cid).reason == 0
    return c


def next_publish(c, timeout=5):
    while True:
        p = c.recv5(timeout=timeout)
        assert p is not None, "no PUBLISH"
        if p.type == R.PUBLISH:
            if p.qos:
                c.send(V.ack(R.PUBACK, p.pid))
            return p


def verify_receipt(j, vkey):
    name, kid, pk = parse_vkey(vkey)
    text, _ = open_note(j["checkpoint"], [(name, kid, pk)])
    origin, size, root, ext = parse_checkpoint(text)
    assert size == j["tree_size"] and j["index"] < size
    rec = base64.b64decode(j["record"], validate=True)
    proof = [base64.b64decode(h, validate=True) for h in j["proof"]]
    assert root_from_inclusion(j["index"], size, leaf_hash(rec), proof) == root
    return cbor2.loads(rec)


def test_receipts_of_committed_messages(node):
    b, vkey, _, _ = node
    c = client5(b.port, "meter-7")
    assert c.subscribe5([("$ledger/receipts/meter-7", 1)]) == [1]
    other = client5(b.port, "meter-8")  # publishes without asking for receipts
    got_index = []
    for i in range(5):
        c.send(V.publish("plant/line1/temp", "{\"t\": %d}" % i, qos=1, pid=i + 1))
        other.send(V.publish("plant/line2/temp", "x", qos=1, pid=i + 1))
    acks, receipts = 0, []
    deadline = time.monotonic() + 10
    while (acks < 5 or len(receipts) < 5) and time.monotonic() < deadline:
        p = c.recv5(timeout=5)
        assert p is not None
        if p.type == R.PUBACK:
            assert p.reason == 0
            # the receipt of a message never comes before its PUBACK
            assert len(receipts) <= acks
            acks += 1
        elif p.type == R.PUBLISH:
            assert p.topic == "$ledger/receipts/meter-7" and not p.retain
            if p.qos:
                c.send(V.ack(R.PUBACK, p.pid))
            receipts.append(json.loads(p.payload))
    assert acks == 5 and len(receipts) == 5
    payloads = []
    for j in receipts:
        rec = verify_receipt(j, vkey)
        assert rec[0] == 1 and rec[6] == "meter-7" and rec[2] == "plant/line1/temp"
        payloads.append(rec[3])
        got_index.append(j["index"])
    assert payloads == [b"{\"t\": %d}" % i for i in range(5)]
    assert got_index == sorted(got_index)
    assert c.recv5(timeout=0.5) is None  # nothing of meter-8's


def test_receipts_for_a_311_client(node, raw):
    b, vkey, _, _ = node
    c = raw(b.port)
    c.connect("old-meter")
    assert c.subscribe([("$ledger/receipts/old-meter", 1)]) == [1]
    c.send(R.publish_packet("plant/old", b"reading", qos=1, pid=9))
    kinds = {}
    for _ in range(2):
        p = c.recv(timeout=5)
        assert p is not None
        kinds[p.type] = p
    assert R.PUBACK in kinds and R.PUBLISH in kinds
    body = bytes(kinds[R.PUBLISH].body)
    (tl,) = struct.unpack("!H", body[:2])
    assert body[2:2 + tl] == b"$ledger/receipts/old-meter"
    rec = verify_receipt(json.loads(body[2 + tl + 2:]), vkey)
    assert rec[3] == b"reading" and rec[6] == "old-meter"


def test_blocks_stream_and_checkpoint_follow_commits(node):
    b, vkey, _, _ = node
    w = client5(b.port, "block-watcher")
    assert w.subscribe5([("$ledger/blocks", 1)]) == [1]
    pub = client5(b.port, "pub")
    blocks, prev_hash = [], None
    for i in range(3):
        pub.send(V.publish("plant/x", "m%d" % i, qos=1, pid=i + 1))
        assert pub.expect5(R.PUBACK).reason == 0
        blk = json.loads(next_publish(w).payload)
        hdr = bytes.fromhex(blk["header"])
        assert len(hdr) == 112 and hdr[:4] == b"LMB1"
        assert hashlib.sha256(hdr).hexdigest() == blk["hash"]
        height, = struct.unpack(">Q", hdr[4:12])
        first, count, size = struct.unpack(">QQQ", hdr[44:68])
        t_ms, = struct.unpack(">Q", hdr[100:108])
        assert (blk["height"], blk["first_index"], blk["count"], blk["tree_size"]) == (
            height, first, count, size)
        assert blk["prev_hash"] == hdr[12:44].hex() and blk["root"] == hdr[68:100].hex()
        assert blk["time_ms"] == t_ms and blk["signer_key_id"] == hdr[108:112].hex()
        # a single node proposes its own blocks: its key ID signs them
        assert blk["signer_key_id"] == vkey.split("+")[1]
        if prev_hash is not None:
            assert blk["prev_hash"] == prev_hash and blk["height"] == blocks[-1]["height"] + 1
        prev_hash = blk["hash"]
        blocks.append(blk)
    # the retained checkpoint is the last block's, signed by the node
    r = client5(b.port, "late")
    r.subscribe5([("$ledger/checkpoint", 0)])
    p = r.expect5(R.PUBLISH)
    name, kid, pk = parse_vkey(vkey)
    text, _ = open_note(p.payload.decode(), [(name, kid, pk)])
    origin, size, root, ext = parse_checkpoint(text)
    assert size == blocks[-1]["tree_size"] and root.hex() == blocks[-1]["root"]
    assert ext[0] == "block %d %s" % (blocks[-1]["height"], blocks[-1]["hash"])


def test_proof_of_a_fresh_message_by_hash(node):
    b, vkey, _, _ = node
    c = client5(b.port, "asker")
    c.subscribe5([("answers", 1)])
    c.send(V.publish("plant/y", "fresh", qos=1, pid=1))
    assert c.expect5(R.PUBACK).reason == 0
    # find its record through the block stream's tree size: ask by index 0
    c.send(V.publish("$ledger/proof", "0", qos=1, pid=2,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"))))
    rec_json = None
    for _ in range(2):
        p = c.recv5(timeout=5)
        if p.type == R.PUBLISH:
            c.send(V.ack(R.PUBACK, p.pid))
            rec_json = json.loads(p.payload)
    rec = base64.b64decode(rec_json["record"])
    c.send(V.publish("$ledger/proof", leaf_hash(rec).hex(), qos=1, pid=3,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"))))
    for _ in range(2):
        p = c.recv5(timeout=5)
        if p.type == R.PUBLISH:
            c.send(V.ack(R.PUBACK, p.pid))
            j = json.loads(p.payload)
    assert j["index"] == 0 and cbor2.loads(base64.b64decode(j["record"]))[3] == b"fresh"
    verify_receipt(j, vkey)


def test_cli_watch_across_commits(node):
    b, vkey, _, _ = node
    pub = client5(b.port, "pub")
    pub.send(V.publish("plant/z", "first", qos=1, pid=1))
    assert pub.expect5(R.PUBACK).reason == 0
    w = subprocess.Popen([LEDGERMQ, "watch", "--broker", "127.0.0.1:%d" % b.port, "--key", vkey,
                          "--count", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # one commit every 50 ms until the watcher has seen four checkpoints
        for i in range(200):
            if w.poll() is not None:
                break
            pub.send(V.publish("plant/z", "m%d" % i, qos=1, pid=i % 60000 + 2))
            assert pub.expect5(R.PUBACK).reason == 0
            time.sleep(0.05)
        out, err = w.communicate(timeout=20)
    finally:
        w.kill()
    assert w.returncode == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("verified, first")
    for prev, line in zip(lines, lines[1:]):
        old, new = int(prev.split()[2]), int(line.split()[2])
        assert new > old
        assert line.endswith("verified, consistent with %d" % old), line


def register(b, opkey, pub, name, *extra):
    return cli("device", "register", "--broker", "127.0.0.1:%d" % b.port, "--operator-key", opkey,
               "--pub", pub, "--name", name, *extra)


def test_device_register_revoke_rotate_through_the_broker(node, tmp_path):
    b, vkey, opkey, opv = node
    p = cli("device", "keygen", "--out", tmp_path / "dev.key")
    dev_id = p.stdout.decode().split()[1]
    pub = p.stdout.decode().split("public_hex: ")[1].strip()
    p = register(b, opkey, pub, "meter-1", "--attr", "model=KM-200")
    assert p.returncode == 0, p.stderr
    idx = json.loads(p.stdout)["index"]
    # the record on the ledger is the operator-signed registration
    p = cli("receipt", "--broker", "127.0.0.1:%d" % b.port, idx, "--key", vkey)
    assert p.returncode == 0, p.stderr
    rec = cbor2.loads(base64.b64decode(json.loads(p.stdout)["record"]))
    assert rec[0] == 3 and rec[2] == dev_id and rec[4] == "meter-1" and rec[14] == opv
    # a second registration of the same key: the registry refuses it
    p = register(b, opkey, pub, "meter-1")
    assert p.returncode == 1 and b"refused" in p.stderr and b"already registered" in p.stderr
    # rotation, then revocation
    p = cli("device", "keygen", "--out", tmp_path / "dev2.key")
    pub2 = p.stdout.decode().split("public_hex: ")[1].strip()
    p = cli("device", "rotate", "--broker", "127.0.0.1:%d" % b.port, "--operator-key", opkey,
            "--id", dev_id, "--pub", pub2)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["index"] > idx
    p = cli("device", "revoke", "--broker", "127.0.0.1:%d" % b.port, "--operator-key", opkey,
            "--id", dev_id, "--reason", "stolen")
    assert p.returncode == 0, p.stderr
    p = cli("device", "revoke", "--broker", "127.0.0.1:%d" % b.port, "--operator-key", opkey,
            "--id", dev_id)
    assert p.returncode == 1 and b"refused" in p.stderr


def test_record_of_an_untrusted_operator_refused(node, tmp_path):
    b, _, _, _ = node
    other = tmp_path / "other.key"
    assert cli("operator", "keygen", "--out", other, "--name", "mallory").returncode == 0
    p = cli("device", "keygen", "--out", tmp_path / "dev.key")
    pub = p.stdout.decode().split("public_hex: ")[1].strip()
    p = register(b, other, pub, "fake")
    assert p.returncode == 1 and b"refused" in p.stderr
    assert b"operator" in p.stderr


def test_admin_topic_payload_checks(node):
    b, _, _, _ = node
    c = client5(b.port, "admin-prober")
    c.subscribe5([("answers", 1)])

    def ask(topic, payload, pid):
        c.send(V.publish(topic, payload, qos=1, pid=pid,
                         pprops=V.props((V.RESPONSE_TOPIC, "answers"),
                                        (V.CORRELATION_DATA, b"k%d" % pid))))
        ack, reply = None, None
        while ack is None or reply is None:
            p = c.recv5(timeout=5)
            assert p is not None
            if p.type == R.PUBACK:
                ack = p.reason
            elif p.type == R.PUBLISH:
                c.send(V.ack(R.PUBACK, p.pid))
                assert V.pget(p.props, V.CORRELATION_DATA) == b"k%d" % pid
                reply = json.loads(p.payload)
        return ack, reply

    ack, reply = ask("$ledger/admin/register", b"not cbor", 1)
    assert ack == 0 and reply["error"] == "bad_request"
    # a well-formed record of another kind (a message record) on register
    msg = cbor2.dumps({0: 1, 1: 1, 2: "t", 3: b"x", 5: "p", 6: "c", 9: 1, 10: "n"},
                      canonical=True)
    ack, reply = ask("$ledger/admin/register", msg, 2)
    assert ack == 0 and reply["error"] == "bad_request"
    c.send(V.publish("$ledger/admin/register", b"x", qos=1, pid=3))
    assert c.expect5(R.PUBACK).reason == 0x83
    c.send(V.publish("$ledger/admin/unknown", b"x", qos=1, pid=4))
    assert c.expect5(R.PUBACK).reason == 0x87


def test_admin_needs_an_operator_principal(broker_factory, tmp_path):
    """With a password file and an ACL, only the operator's user may write
    $ledger/admin/... (leading wildcards never grant $ topics)."""
    opkey = tmp_path / "op.key"
    opv = cli("operator", "keygen", "--out", opkey, "--name", "op-a").stdout.decode().strip()
    pw = tmp_path / "passwd"
    lines = []
    for user, secret in (("operator", b"op-secret"), ("plain", b"plain-secret")):
        h = nacl.pwhash.argon2id.str(secret, opslimit=1, memlimit=8192).decode()
        lines.append("%s:%s" % (user, h))
    pw.write_text("\n".join(lines) + "\n")
    os.chmod(pw, 0o600)
    acl = tmp_path / "acl"
    acl.write_text("user operator\ntopic write $ledger/admin/#\n"
                   "pattern readwrite ledgermq-cli/%c/#\npattern readwrite #\n")
    # no ledger_topic: registry records go through the pipeline all the same
    b = broker_factory(config={"operator_key": opv, "password_file": pw, "acl_file": acl,
                               "allow_anonymous": "false"})
    p = cli("device", "keygen", "--out", tmp_path / "dev.key")
    pub = p.stdout.decode().split("public_hex: ")[1].strip()
    base = ["device", "register", "--broker", "127.0.0.1:%d" % b.port, "--operator-key", opkey,
            "--pub", pub, "--name", "m"]
    p = cli(*base, "--username", "plain", "--password", "plain-secret")
    assert p.returncode == 2
    assert b"refused: PUBACK 0x87" in p.stderr
    p = cli(*base, "--username", "operator", "--password", "op-secret")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["index"] == 0
    p = cli(*base[:4], "--username", "nobody", "--password", "x", *base[4:])
    assert p.returncode == 2 and b"CONNACK 0x86" in p.stderr


def test_device_session_may_not_submit_registry_records(node, tmp_path):
    """A client authenticated as a device (CWT token) is never an operator:
    $ledger/admin/... refuses it with 0x87 whatever it carries."""
    b, _, opkey, _ = node
    p = cli("device", "keygen", "--out", tmp_path / "dev.key")
    dev_id = p.stdout.decode().split()[1]
    pub = p.stdout.decode().split("public_hex: ")[1].strip()
    assert register(b, opkey, pub, "meter-1").returncode == 0
    tok = cli("token", "--key", tmp_path / "dev.key", "--aud", "ledgermq.local/default", "--hex")
    assert tok.returncode == 0, tok.stderr
    token = bytes.fromhex(tok.stdout.decode().strip())
    c = V.Client5(b.port)
    body = (R.mstr("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 60) + b"\x00" +
            R.mstr(dev_id) + R.mstr(dev_id) + R.mstr(token))
    c.send(R.packet(R.CONNECT, 0, body))
    assert c.expect5(R.CONNACK).reason == 0
    # refused before the payload is even looked at
    c.send(V.publish("$ledger/admin/register", b"\xa0", qos=1, pid=1,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"))))
    assert c.expect5(R.PUBACK).reason == 0x87
    c.send(V.publish("$ledger/admin/revoke", b"\xa0", qos=1, pid=2,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"))))
    assert c.expect5(R.PUBACK).reason == 0x87
    assert "a device session may not submit registry records" in b.log()
    # a device may still ask for proofs
    c.send(V.publish("$ledger/proof", b"0", qos=1, pid=3,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"))))
    assert c.expect5(R.PUBACK).reason == 0


def registry_ask(c, payload, pid):
    """One $ledger/registry request: (PUBACK reason, reply payload bytes)."""
    c.send(V.publish("$ledger/registry", payload, qos=1, pid=pid,
                     pprops=V.props((V.RESPONSE_TOPIC, "answers"),
                                    (V.CORRELATION_DATA, b"r%d" % pid))))
    ack, reply = None, None
    while ack is None or reply is None:
        p = c.recv5(timeout=5)
        assert p is not None
        if p.type == R.PUBACK:
            ack = p.reason
        elif p.type == R.PUBLISH:
            if p.qos:
                c.send(V.ack(R.PUBACK, p.pid))
            assert V.pget(p.props, V.CORRELATION_DATA) == b"r%d" % pid
            reply = bytes(p.payload)
    return ack, reply


def test_registry_read_through_the_broker(node, tmp_path):
    """Devices registered, rotated and revoked through the broker: `device
    show|list --broker` ($ledger/registry) print exactly what the offline
    commands print on the stopped node's data dir."""
    b, _, opkey, opv = node
    ids = []
    for i in range(3):
        p = cli("device", "keygen", "--out", tmp_path / ("dev%d.key" % i))
        ids.append(p.stdout.decode().split()[1])
        pub = p.stdout.decode().split("public_hex: ")[1].strip()
        p = register(b, opkey, pub, "meter-%d" % i, "--attr", "model=KM-%d" % i,
                     "--attr", "owner=\"q\"\\x")
        assert p.returncode == 0, p.stderr
    pub2 = cli("device", "keygen", "--out", tmp_path / "new.key").stdout.decode().split(
        "public_hex: ")[1].strip()
    broker = ["--broker", "127.0.0.1:%d" % b.port]
    assert cli("device", "rotate", *broker, "--operator-key", opkey, "--id", ids[1],
               "--pub", pub2).returncode == 0
    assert cli("device", "revoke", *broker, "--operator-key", opkey, "--id", ids[2],
               "--reason", "stolen").returncode == 0
    online_show = {}
    for did in ids:
        p = cli("device", "show", did, *broker)
        assert p.returncode == 0, p.stderr
        online_show[did] = p.stdout
    assert json.loads(online_show[ids[2]])["status"] == "revoked"
    assert json.loads(online_show[ids[1]])["rotations"] == 1
    online_list = cli("device", "list", *broker)
    assert online_list.returncode == 0, online_list.stderr
    paged = cli("device", "list", *broker, "--page", "1")  # one device per request
    assert paged.returncode == 0, paged.stderr
    assert paged.stdout == online_list.stdout
    assert [d["id"] for d in json.loads(online_list.stdout)] == sorted(ids)
    unknown = "d-" + "a" * 32
    p = cli("device", "show", unknown, *broker)
    assert p.returncode == 1 and b"not_found" in p.stderr
    b.stop()
    for did in ids:
        p = cli("-d", b.data_dir, "device", "show", did, "--trust", opv)
        assert p.returncode == 0, p.stderr
        assert p.stdout == online_show[did]
    p = cli("-d", b.data_dir, "device", "list", "--trust", opv)
    assert p.returncode == 0, p.stderr
    assert p.stdout == online_list.stdout


def test_registry_requests(node, tmp_path):
    """$ledger/registry pages and refusals, asked over raw MQTT 5."""
    b, _, opkey, _ = node
    ids = []
    for i in range(3):
        p = cli("device", "keygen", "--out", tmp_path / ("dev%d.key" % i))
        ids.append(p.stdout.decode().split()[1])
        pub = p.stdout.decode().split("public_hex: ")[1].strip()
        assert register(b, opkey, pub, "m%d" % i).returncode == 0
    names = {did: "m%d" % i for i, did in enumerate(ids)}
    ids.sort()
    c = client5(b.port, "registry-reader")
    assert c.subscribe5([("answers", 1)]) == [1]
    ack, reply = registry_ask(c, b"list", 1)
    assert ack == 0 and [d["id"] for d in json.loads(reply)] == ids
    ack, reply = registry_ask(c, b"list 2", 2)
    assert ack == 0 and [d["id"] for d in json.loads(reply)] == ids[:2]
    ack, reply = registry_ask(c, b" list %s 1 " % ids[0].encode(), 3)
    assert ack == 0 and [d["id"] for d in json.loads(reply)] == [ids[1]]
    ack, reply = registry_ask(c, b"list %s" % ids[2].encode(), 4)
    assert ack == 0 and reply == b"[]"
    ack, reply = registry_ask(c, b"show %s" % ids[1].encode(), 5)
    assert ack == 0 and json.loads(reply)["id"] == ids[1] and json.loads(reply)["name"] == names[ids[1]]
    ack, reply = registry_ask(c, b"show d-" + b"a" * 32, 6)
    assert ack == 0 and json.loads(reply) == {
        "error": "not_found", "reason": "d-%s is not registered" % ("a" * 32)}
    for pid, bad in enumerate([b"", b"show", b"show x", b"list 0", b"list 101", b"list 1 2",
                               b"lists", b"list %s\x00" % ids[0].encode(), b"show " + b"d-" +
                               b"1" * 32, b"drop"], 10):
        ack, reply = registry_ask(c, bad, pid)
        assert ack == 0 and json.loads(reply)["error"] == "bad_request", bad
