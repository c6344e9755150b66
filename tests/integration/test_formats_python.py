"""Independent check of the ledger formats (docs/FORMATS.md: records,
verifier keys, signed notes, checkpoints, receipts, tlog-proof), written
from RFC 8949, RFC 9162 and the C2SP specs with cbor2, hashlib and PyNaCl,
not from the C code. The C side writes its examples through the
LMQ_FORMAT_EXAMPLES_DIR hook of the test_record and test_receipt unit-test
binaries ($LMQ_BUILD_DIR, default <repo>/build). Run with
/usr/bin/python3 -m pytest."""
import base64
import hashlib
import json
import os
import subprocess

import cbor2
import nacl.exceptions
import nacl.signing
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("LMQ_BUILD_DIR", os.path.join(REPO, "build"))
TEST_RECORD = os.path.join(BUILD_DIR, "test_record")
TEST_RECEIPT = os.path.join(BUILD_DIR, "test_receipt")

pytestmark = pytest.mark.skipif(
    not (os.path.exists(TEST_RECORD) and os.path.exists(TEST_RECEIPT)),
    reason="test_record/test_receipt not built")

ORIGIN = "ledger.example/plant1"
DASH = "\u2014"


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    env = dict(os.environ, LMQ_FORMAT_EXAMPLES_DIR=str(d))
    for exe in (TEST_RECORD, TEST_RECEIPT):
        subprocess.run([exe], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=120)
    return d


# ---- RFC 9162 ----

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def mth(leaves):
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def root_from_inclusion(index, size, leaf, proof):
    """RFC 9162 §2.1.3.2."""
    if index >= size:
        raise ValueError("index out of range")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


# ---- C2SP signed-note ----

def key_id(name: str, typ: int, pk: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([typ]) + pk).digest()[:4]


def parse_vkey(s: str):
    name, kid, key = s.split("+", 2)
    raw = base64.b64decode(key, validate=True)
    assert raw[0] == 1 and len(raw) == 33
    assert bytes.fromhex(kid) == key_id(name, raw[0], raw[1:])
    return name, bytes.fromhex(kid), raw[1:]


def open_note(note: str, vkeys):
    """Returns (text, set of vkey indexes that signed); raises on a bad
    signature of a known key or if none verified."""
    assert note.endswith("\n")
    i = note.rindex("\n\n")
    text, sigs = note[:i + 1], note[i + 2:]
    signed = set()
    for line in sigs.splitlines():
        assert line.startswith(DASH + " ")
        name, b64 = line[2:].split(" ")
        raw = base64.b64decode(b64, validate=True)
        for n, (vname, vid, vpk) in enumerate(vkeys):
            if vname == name and vid == raw[:4]:
                nacl.signing.VerifyKey(vpk).verify(text.encode(), raw[4:])
                signed.add(n)
    if not signed:
        raise ValueError("no known signature")
    return text, signed


def parse_checkpoint(text: str):
    lines = text.split("\n")
    assert lines[-1] == ""
    origin, size, root = lines[0], lines[1], lines[2]
    assert origin and size.isdigit() and (size == "0" or not size.startswith("0"))
    root = base64.b64decode(root, validate=True)
    assert len(root) == 32
    return origin, int(size), root, lines[3:-1]


def node_keys(examples):
    return [parse_vkey(l) for l in (examples / "node-vkeys.txt").read_text().splitlines()]


# ---- tests ----

def test_records_are_deterministic_cbor(examples):
    for name in ("record-message", "record-message-signed", "record-config", "record-3"):
        raw = (examples / f"{name}.cbor").read_bytes()
        obj = cbor2.loads(raw)
        assert cbor2.dumps(obj, canonical=True) == raw, name
        assert isinstance(obj, dict) and obj[1] == 1
        assert list(obj) == sorted(obj)
    msg = cbor2.loads((examples / "record-message.cbor").read_bytes())
    assert msg == {0: 1, 1: 1, 2: "plant1/line3/temp", 3: b'{"t":21.5}', 5: "meter-0042",
                   6: "meter-0042", 9: 1767225600123, 10: "node-a"}
    signed = cbor2.loads((examples / "record-message-signed.cbor").read_bytes())
    payload = b'{"lat":48.1374,"lon":11.5755}'
    assert signed[4] == hashlib.sha256(b"\x11" * 32 + payload).digest()
    assert 3 not in signed and signed[7] == 42 and signed[11][:2] == b"\xd2\x84"
    cfg = cbor2.loads((examples / "record-config.cbor").read_bytes())
    assert cfg[0] == 2 and cfg[2] == ORIGIN and cfg[4] == 2
    for i, vk in enumerate(cfg[3]):
        name, _, pk = parse_vkey(vk)
        assert name == ORIGIN
        assert pk == bytes(nacl.signing.SigningKey(bytes([i + 1]) * 32).verify_key)


def test_checkpoint_note(examples):
    keys = node_keys(examples)
    note = (examples / "checkpoint.note").read_text()
    text, signed = open_note(note, keys)
    assert signed == {0, 1, 2}
    origin, size, root, ext = parse_checkpoint(text)
    assert origin == ORIGIN and size == 5
    assert len(ext) == 1 and ext[0].startswith("block 2 ")
    assert ext[0] == "block 2 " + hashlib.sha256(b"block 2 header").hexdigest()
    # Ed25519 is deterministic: PyNaCl signing the same text with node key 1
    # must give the C signature line byte for byte.
    sk = nacl.signing.SigningKey(b"\x01" * 32)
    sig = sk.sign(text.encode()).signature
    line = f"{DASH} {ORIGIN} " + base64.b64encode(keys[0][1] + sig).decode()
    assert line in note.splitlines()
    # a changed size is caught
    with pytest.raises(nacl.exceptions.BadSignatureError):
        open_note(note.replace("\n5\n", "\n6\n", 1), keys)


def test_receipt_json(examples):
    keys = node_keys(examples)
    receipt = json.loads((examples / "receipt.json").read_text())
    assert set(receipt) == {"index", "tree_size", "record", "proof", "checkpoint"}
    record = base64.b64decode(receipt["record"], validate=True)
    assert record == (examples / "record-3.cbor").read_bytes()
    text, signed = open_note(receipt["checkpoint"], keys)
    assert len(signed) >= 2  # the quorum of the example configuration
    origin, size, root, _ = parse_checkpoint(text)
    assert origin == ORIGIN and size == receipt["tree_size"]
    proof = [base64.b64decode(h, validate=True) for h in receipt["proof"]]
    assert all(len(h) == 32 for h in proof)
    assert root_from_inclusion(receipt["index"], size, leaf_hash(record), proof) == root
    # a changed record or index does not verify
    bad = bytearray(record)
    bad[-1] ^= 1
    assert root_from_inclusion(receipt["index"], size, leaf_hash(bytes(bad)), proof) != root
    assert root_from_inclusion(receipt["index"] - 1, size, leaf_hash(record), proof) != root
    rec = cbor2.loads(record)
    assert rec[0] == 1 and rec[2] == "plant1/line3/pressure"


def test_tlog_proof(examples):
    keys = node_keys(examples)
    receipt = json.loads((examples / "receipt.json").read_text())
    text = (examples / "receipt.tlog-proof").read_text()
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"ledgermq receipt").decode()
    assert lines[2] == f"index {receipt['index']}"
    blank = lines.index("", 3)
    assert lines[3:blank] == receipt["proof"]
    checkpoint = "\n".join(lines[blank + 1:])
    assert checkpoint == receipt["checkpoint"]
    open_note(checkpoint, keys)


def test_reference_tree_roots():
    """The README of ../shared/testdata/merkle gives the roots of its
    reference tree; this Python MTH must agree (so it is a fair judge)."""
    leaves = [leaf_hash(bytes.fromhex(h)) for h in
              ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
               "606162636465666768696a6b6c6d6e6f"]]
    assert mth(leaves).hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    assert mth(leaves[:3]).hex() == "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"
