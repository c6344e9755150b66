"""The `ledgermq` CLI on a ledger data dir: append/proof/verify round trip,
independent re-verification of receipts in Python (hashlib + PyNaCl +
cbor2, written from RFC 9162, C2SP signed-note/tlog-checkpoint and
docs/FORMATS.md, not from our C code), tamper detection by `audit`, and a
crash test that SIGKILLs a writer at 100 random moments.

LMQ_BUILD_DIR names the build dir holding `ledgermq` (default <repo>/build).
"""
import base64
import fcntl
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import threading
import time

import cbor2
import nacl.signing
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("LMQ_BUILD_DIR", os.path.join(REPO, "build"))
LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")

pytestmark = pytest.mark.skipif(not os.path.exists(LEDGERMQ),
                                reason="ledgermq not built in " + BUILD_DIR)

ORIGIN = "example.com/plant-7"


def cli(*args, datadir=None, input=None, check=None):
    cmd = [LEDGERMQ] + (["-d", str(datadir)] if datadir else []) + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=120)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def append(datadir, lines, topic="plant/line-1", batch=None):
    args = ["log", "append", "--topic", topic, "--origin", ORIGIN]
    if batch:
        args += ["--batch", batch]
    data = "".join(l + "\n" for l in lines).encode()
    return cli(*args, datadir=datadir, input=data, check=0)


# ---- independent verifiers (from the specs) ----

def crc32c(data, crc=0):
    table = crc32c.table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


crc32c.table = _crc_table()


def leaf_hash(rec):
    return hashlib.sha256(b"\x00" + rec).digest()


def node_hash(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


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
            if not fn & 1:
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


def parse_vkey(vkey):
    name, hexid, b64 = vkey.split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33
    kid = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert kid.hex() == hexid, "verifier key id does not match its key"
    return name, kid, raw[1:]


def verify_note(note, vkey):
    """C2SP signed-note with one Ed25519 key; returns the note text."""
    name, kid, pk = parse_vkey(vkey)
    text, sep, sigs = note.partition("\n\n")
    assert sep, "no signature block"
    text += "\n"
    ok = False
    for line in sigs.splitlines():
        assert line.startswith("\u2014 "), line
        sname, sig_b64 = line[2:].split(" ")
        sig = base64.b64decode(sig_b64)
        if sname == name and sig[:4] == kid:
            nacl.signing.VerifyKey(pk).verify(text.encode(), sig[4:])
            ok = True
    assert ok, "no signature by the key"
    return text


def parse_checkpoint(text):
    lines = text.rstrip("\n").split("\n")
    cp = {"origin": lines[0], "size": int(lines[1]), "root": base64.b64decode(lines[2])}
    for ext in lines[3:]:
        if ext.startswith("block "):
            _, h, hx = ext.split(" ")
            cp["block_height"], cp["block_hash"] = int(h), bytes.fromhex(hx)
    return cp


def block_header(height, prev, first, count, size, root, time_ms, keyid):
    """docs/FORMATS.md "Block headers": 112 bytes, big-endian."""
    return (b"LMB1" + struct.pack(">Q", height) + prev + struct.pack(">QQQ", first, count, size)
            + root + struct.pack(">Q", time_ms) + struct.pack(">I", keyid))


def verify_receipt_independently(receipt, vkey):
    cp_text = verify_note(receipt["checkpoint"], vkey)
    cp = parse_checkpoint(cp_text)
    assert cp["origin"] == ORIGIN
    assert cp["size"] == receipt["tree_size"]
    rec = base64.b64decode(receipt["record"])
    proof = [base64.b64decode(p) for p in receipt["proof"]]
    root = root_from_inclusion(receipt["index"], receipt["tree_size"], leaf_hash(rec), proof)
    assert root == cp["root"], "inclusion proof does not lead to the signed root"
    return rec, cp


# ---- tests ----

def test_round_trip_and_independent_verification(tmp_path):
    d = tmp_path / "data"
    lines = ["reading %d temp=%d.%d" % (i, 20 + i % 7, i % 10) for i in range(2500)]
    out = append(d, lines, batch=1000).stdout.decode().splitlines()
    assert len(out) == 3 and out[-1].startswith("committed height=2 first=2000 count=500 size=2500")
    vkey = cli("key", "show", datadir=d, check=0).stdout.decode().strip()
    assert vkey.startswith(ORIGIN + "+")
    mode = os.stat(d / "node.key").st_mode & 0o777
    assert mode == 0o600

    info = cli("log", "info", datadir=d, check=0).stdout.decode()
    assert "size: 2500" in info and "blocks: 3" in info

    blocks = [l.split() for l in cli("log", "blocks", datadir=d, check=0).stdout.decode()
              .splitlines() if not l.startswith("#")]
    assert len(blocks) == 3
    _, kid, _ = parse_vkey(vkey)
    prev = bytes(32)
    for b in blocks:
        h, first, count, size, t = (int(x) for x in b[:5])
        assert int(b[5], 16) == int.from_bytes(kid, "big")
        hdr = block_header(h, prev, first, count, size, bytes.fromhex(b[6]), t, int(b[5], 16))
        assert hashlib.sha256(hdr).hexdigest() == b[7], "block hash recomputed from FORMATS.md"
        prev = bytes.fromhex(b[7])

    for index, size in [(0, None), (5, None), (1999, 2000), (2499, None), (17, 1000)]:
        args = ["log", "proof", index] + (["--size", size] if size else [])
        rj = cli(*args, datadir=d, check=0).stdout.decode()
        receipt = json.loads(rj)
        rec, cp = verify_receipt_independently(receipt, vkey)
        # The checkpoint names the block ending at its size, and that block's hash.
        blk = [b for b in blocks if int(b[3]) == cp["size"]][0]
        assert cp["block_height"] == int(blk[0]) and cp["block_hash"].hex() == blk[7]
        # The record is deterministic CBOR that cbor2 decodes.
        m = cbor2.loads(rec)
        assert m[0] == 1 and m[1] == 1 and m[2] == "plant/line-1"
        assert m[3] == lines[index].encode()
        assert cbor2.dumps(m, canonical=True) == rec
        f = tmp_path / ("r%d.json" % index)
        f.write_text(rj)
        p = cli("verify-receipt", f, "--key", vkey, check=0)
        assert b"verified" in p.stdout

    # tlog-proof export carries the same proof and checkpoint.
    tp = cli("log", "proof", 5, "--format", "tlog-proof", datadir=d, check=0).stdout.decode()
    assert tp.startswith("c2sp.org/tlog-proof@v1\nindex 5\n")

    # `log get` decodes the record; --raw gives its bytes.
    g = cli("log", "get", 5, datadir=d, check=0).stdout.decode()
    assert '"topic": "plant/line-1"' in g and json.dumps(lines[5]) in g
    raw = bytes.fromhex(cli("log", "get", 5, "--raw", datadir=d, check=0).stdout.decode().strip())
    assert cbor2.loads(raw)[3] == lines[5].encode()

    # Failures: wrong key (1), tampered proof (1), unreadable file (2), usage (2).
    other = tmp_path / "other"
    append(other, ["x"])
    okey = cli("key", "show", datadir=other, check=0).stdout.decode().strip()
    f = tmp_path / "r5.json"
    p = cli("verify-receipt", f, "--key", okey.replace("plant-7", "plant-7"), check=1)
    r = json.loads(f.read_text())
    r["proof"][0] = base64.b64encode(bytes(32)).decode()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(r))
    p = cli("verify-receipt", bad, "--key", vkey, check=1)
    assert b"NOT verified" in p.stderr
    cli("verify-receipt", tmp_path / "missing.json", "--key", vkey, check=2)
    cli("log", "proof", datadir=d, check=2)
    cli("log", "get", 99999, datadir=d, check=2)
    cli("nonsense", check=2)

    # Consistency between two checkpoints, verified offline.
    (tmp_path / "c1").write_bytes(cli("log", "checkpoint", "--size", 1000, datadir=d, check=0).stdout)
    (tmp_path / "c2").write_bytes(cli("log", "checkpoint", datadir=d, check=0).stdout)
    (tmp_path / "p").write_bytes(cli("log", "consistency", 1000, 2500, datadir=d, check=0).stdout)
    cli("verify-consistency", tmp_path / "c1", tmp_path / "c2", tmp_path / "p", "--key", vkey, check=0)
    pr = (tmp_path / "p").read_text().splitlines()
    pr[3] = base64.b64encode(bytes(32)).decode()
    (tmp_path / "p2").write_text("\n".join(pr) + "\n")
    cli("verify-consistency", tmp_path / "c1", tmp_path / "c2", tmp_path / "p2", "--key", vkey,
        check=1)

    cli("audit", datadir=d, check=0)


def test_append_refused_while_locked(tmp_path):
    d = tmp_path / "data"
    append(d, ["a", "b"])
    with open(d / "ledger" / "LOCK", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        p = cli("log", "append", "--topic", "t", datadir=d, input=b"c\n", check=2)
        assert b"in use" in p.stderr
        cli("log", "info", datadir=d, check=0)  # readers need no lock


def _index_entry(d, i):
    with open(d / "ledger" / "index", "rb") as f:
        f.seek(i * 16)
        pos, length, _ = struct.unpack("<QII", f.read(16))
    return pos >> 32, pos & 0xFFFFFFFF, length


def _flip(path, off, fix_frame_at=None):
    data = bytearray(path.read_bytes())
    data[off] ^= 0x01
    if fix_frame_at is not None:  # recompute the frame CRC like a careful forger
        fo = fix_frame_at
        n = struct.unpack_from("<I", data, fo)[0]
        crc = crc32c(bytes(data[fo:fo + 8]) + bytes(data[fo + 12:fo + 12 + n]))
        struct.pack_into("<I", data, fo + 8, crc)
    path.write_bytes(bytes(data))


def _last_commit_frame(seg):
    data = seg.read_bytes()
    off, last = 16, None
    while off + 12 <= len(data):
        n, typ = struct.unpack_from("<IB", data, off)
        if typ == 2:
            last = off
        off += 12 + n
    return last


@pytest.mark.parametrize("target", ["record", "record-crc-fixed", "node", "block",
                                    "block-crc-fixed", "checkpoint", "checkpoint-crc-fixed"])
def test_tamper_detected_by_audit(tmp_path, target):
    d = tmp_path / "data"
    append(d, ["line %d" % i for i in range(30)], batch=10)
    cli("audit", datadir=d, check=0)
    seg = d / "ledger" / "seg-00000000"
    if target.startswith("record"):
        s, off, n = _index_entry(d, 15)
        _flip(seg, off + 12 + n - 2, fix_frame_at=off if target.endswith("fixed") else None)
        expect = (["nodes/00 offset %d" % (15 * 32), "record 15"] if target.endswith("fixed")
                  else ["seg-00000000 offset %d" % off, "record 15"])
    elif target == "node":
        _flip(d / "ledger" / "nodes" / "01", 3 * 32 + 7)
        expect = ["ledger/nodes/01 offset 96", "level 1, index 3"]
    elif target.startswith("block"):
        bp = d / "ledger" / "blocks"
        _flip(bp, 128 + 70)
        if target.endswith("fixed"):  # entry CRC recomputed: content must still differ
            data = bytearray(bp.read_bytes())
            struct.pack_into("<I", data, 128 + 124, crc32c(bytes(data[128:128 + 124])))
            bp.write_bytes(bytes(data))
        expect = ["ledger/blocks offset 128", "block 1"]
    else:
        fo = _last_commit_frame(seg)
        n = struct.unpack_from("<I", seg.read_bytes(), fo)[0]
        _flip(seg, fo + 12 + n - 20, fix_frame_at=fo if target.endswith("fixed") else None)
        expect = (["seg-00000000 offset %d" % fo, "checkpoint of block 2", "signature"]
                  if target.endswith("fixed") else ["seg-00000000 offset %d" % fo, "block 2"])
    p = cli("audit", datadir=d, check=1)
    out = p.stdout.decode()
    problems = [l for l in out.splitlines() if l.startswith("PROBLEM")]
    assert problems, out
    for e in expect:
        assert any(e in l for l in problems), (e, out)


class Writer:
    """`ledgermq log append` fed continuously; collects its commit lines."""

    def __init__(self, datadir, start):
        self.p = subprocess.Popen([LEDGERMQ, "-d", str(datadir), "log", "append", "--topic", "c",
                                   "--origin", ORIGIN, "--batch", "200"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        self.commits = []
        self.next = start
        self.t_out = threading.Thread(target=self._read, daemon=True)
        self.t_out.start()
        self.t_in = threading.Thread(target=self._feed, daemon=True)
        self.t_in.start()

    def _feed(self):
        try:
            while True:
                chunk = "".join("m%d\n" % (self.next + i) for i in range(50))
                self.p.stdin.write(chunk.encode())
                self.p.stdin.flush()
                self.next += 50
                time.sleep(0.0005)
        except (BrokenPipeError, ValueError, OSError):
            pass

    def _read(self):
        for line in self.p.stdout:
            f = dict(kv.split("=") for kv in line.decode().split()[1:])
            self.commits.append((int(f["size"]), f["root"]))

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        self.t_out.join(5)


def test_crash_sigkill_100_times(tmp_path):
    d = tmp_path / "data"
    rnd = random.Random(1234)
    synced_size, synced_root = 0, None
    t_end = time.time() + 90
    torn = 0
    for it in range(100):
        assert time.time() < t_end, "crash test too slow"
        info = cli("log", "info", datadir=d).stdout.decode() if it else ""
        size = int(info.split("size: ")[1].split("\n")[0]) if info else 0
        w = Writer(d, size)
        time.sleep(rnd.uniform(0.002, 0.08))
        w.kill()
        if w.commits:
            synced_size, synced_root = w.commits[-1]
        # The auditor passes on the crashed dir (a torn tail is only a warning).
        a = cli("audit", "--quiet", datadir=d)
        assert a.returncode == 0, (it, a.stdout, a.stderr)
        torn += b"uncommitted" in a.stdout or b"lag" in a.stdout
        # A read-write open recovers; the log keeps every synced record.
        cli("log", "recover", datadir=d, check=0)
        info = cli("log", "info", datadir=d, check=0).stdout.decode()
        now_size = int(info.split("size: ")[1].split("\n")[0])
        assert now_size >= synced_size, (it, now_size, synced_size)
        if synced_size:
            cp = cli("log", "checkpoint", "--size", synced_size, datadir=d, check=0).stdout.decode()
            assert base64.b64decode(cp.split("\n")[2]).hex() == synced_root
            rec = bytes.fromhex(cli("log", "get", synced_size - 1, "--raw", datadir=d, check=0)
                                .stdout.decode().strip())
            assert cbor2.loads(rec)[3] == ("m%d" % (synced_size - 1)).encode()
    assert synced_size > 0
    cli("audit", datadir=d, check=0)
    print("crash test: %d records synced, %d of 100 kills left a torn tail or lagging "
          "derived files" % (synced_size, torn))
