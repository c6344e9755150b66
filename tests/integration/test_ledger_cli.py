"""The `ledgermq` CLI on a ledger data dir: append/proof/verify round trip,
independent re-verification of receipts in Python (hashlib + PyNaCl +
cbor2, written from RFC 9162, C2SP signed-note/tlog-checkpoint and
docs/FORMATS.md, not from our C code), tamper detection by `audit`, and a
crash test that SIGKILLs a busy writer at 100 random moments.

LMQ_BUILD_DIR names the build dir holding `ledgermq` (default <repo>/build).
"""
import base64
import fcntl
import hashlib
import json
import os
import random
import re
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


def _flip(path, off, fix_frame_at=None, base64_char=False):
    data = bytearray(path.read_bytes())
    if base64_char:  # another valid base64 letter: the bytes change, the syntax stays
        data[off] = ord("B") if data[off] == ord("A") else ord("A")
    else:
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
        # A byte inside the signature's base64 (72 bytes, 96 characters, no
        # padding): a forger's different signature, not a malformed note.
        _flip(seg, fo + 12 + n - 20, fix_frame_at=fo if target.endswith("fixed") else None,
              base64_char=True)
        expect = (["seg-00000000 offset %d" % fo, "checkpoint of block 2", "signature"]
                  if target.endswith("fixed") else ["seg-00000000 offset %d" % fo, "block 2"])
    p = cli("audit", datadir=d, check=1)
    out = p.stdout.decode()
    problems = [l for l in out.splitlines() if l.startswith("PROBLEM")]
    assert problems, out
    for e in expect:
        assert any(e in l for l in problems), (e, out)


class Writer:
    """`ledgermq log append` reading a file of records m<start>, m<start+1>,
    ... (so it never waits for input: every moment of its life is spent
    appending); collects its commit lines."""

    def __init__(self, datadir, start, n=100000):
        self.inp = os.path.join(os.path.dirname(str(datadir)), "writer.in")
        with open(self.inp, "w") as f:
            f.write("".join("m%d\n" % (start + i) for i in range(n)))
        with open(self.inp, "rb") as f:
            self.p = subprocess.Popen([LEDGERMQ, "-d", str(datadir), "log", "append", "--topic",
                                       "c", "--origin", ORIGIN, "--batch", "200"],
                                      stdin=f, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.commits = []
        self.t_out = threading.Thread(target=self._read, daemon=True)
        self.t_out.start()

    def _read(self):
        for line in self.p.stdout:
            f = dict(kv.split("=") for kv in line.decode().split()[1:])
            self.commits.append((int(f["size"]), f["root"]))

    def wait_commit(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.commits and self.p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.commits, "the writer committed nothing in %d s" % timeout

    def kill(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()
        self.t_out.join(5)
        return self.p.returncode


def test_crash_sigkill_100_times(tmp_path):
    """100 kills of a busy writer, each after its first commit (so that the
    kill lands while it appends whatever the machine's speed; kills during
    the creation of the data dir are test_crash_create.py's)."""
    d = tmp_path / "data"
    rnd = random.Random(1234)
    synced_size, synced_root = 0, None
    torn = 0
    for it in range(100):
        info = cli("log", "info", datadir=d).stdout.decode() if it else ""
        size = int(info.split("size: ")[1].split("\n")[0]) if info else 0
        w = Writer(d, size)
        w.wait_commit()
        time.sleep(rnd.uniform(0, 0.03))
        # Killed, not finished: it had 100000 records to append.
        assert w.kill() == -signal.SIGKILL, it
        synced_size, synced_root = w.commits[-1]
        # The auditor passes on the crashed dir (a torn tail is only a warning).
        a = cli("audit", "--quiet", datadir=d)
        assert a.returncode == 0, (it, a.stdout, a.stderr)
        # A read-write open recovers; the log keeps every synced record.
        r = cli("log", "recover", datadir=d, check=0)
        # Did the kill land mid-write? The recovery says so: a torn tail cut
        # or derived files rebuilt from the segments.
        torn += b"torn tail" in r.stderr or b"rebuil" in r.stderr
        info = cli("log", "info", datadir=d, check=0).stdout.decode()
        now_size = int(info.split("size: ")[1].split("\n")[0])
        assert now_size >= synced_size, (it, now_size, synced_size)
        cp = cli("log", "checkpoint", "--size", synced_size, datadir=d, check=0).stdout.decode()
        assert base64.b64decode(cp.split("\n")[2]).hex() == synced_root
        rec = bytes.fromhex(cli("log", "get", synced_size - 1, "--raw", datadir=d, check=0)
                            .stdout.decode().strip())
        assert cbor2.loads(rec)[3] == ("m%d" % (synced_size - 1)).encode()
    cli("audit", datadir=d, check=0)
    print("crash test: %d records synced, %d of 100 kills left a torn tail or lagging "
          "derived files" % (synced_size, torn))
    # Otherwise the test only ever killed an idle writer and proved nothing.
    assert torn >= 10, "only %d of 100 kills landed mid-write" % torn


# ---- group commit, config file, exit codes ----

STRACE = shutil.which("strace")
needs_strace = pytest.mark.skipif(STRACE is None, reason="strace not installed (apt install strace)")


def traced_append(tmp_path, args, lines, name="trace"):
    """Runs `ledgermq ARGS` under strace with LINES on stdin (a file, so that
    every batch is full); returns (process, {(syscall, path): count})."""
    inp = tmp_path / (name + ".in")
    inp.write_text("".join(l + "\n" for l in lines))
    out = tmp_path / name
    # An ASan build's leak checker cannot run under ptrace: turn it off here.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    with open(inp, "rb") as f:
        p = subprocess.run([STRACE, "-f", "-y", "-o", str(out), "-e",
                            "trace=pwrite64,pwritev,pwritev2,write,writev,fdatasync,fsync",
                            LEDGERMQ] + [str(a) for a in args],
                           stdin=f, capture_output=True, timeout=120, env=env)
    calls = {}
    rx = re.compile(r"^(?:\d+\s+)?(\w+)\(\d+<([^>]*)>")
    for line in out.read_text(errors="replace").splitlines():
        m = rx.match(line)
        if m:
            key = (m.group(1), os.path.basename(m.group(2)))
            calls[key] = calls.get(key, 0) + 1
    return p, calls


def count(calls, names, path=None):
    return sum(n for (sc, pth), n in calls.items()
               if sc in names and (path is None or pth == path))


WRITES = ("pwrite64", "pwritev", "pwritev2", "write", "writev")
SYNCS = ("fdatasync", "fsync")


@needs_strace
def test_group_commit_one_write_one_fdatasync_per_batch(tmp_path):
    d = tmp_path / "data"
    append(d, ["first"])  # the log, the node key and the segment exist
    results = {}
    for k, n in ((10, 100), (40, 100)):
        lines = ["k%d-%d" % (k, i) for i in range(k * n)]
        p, calls = traced_append(tmp_path, ["-d", d, "log", "append", "--topic", "t",
                                            "--batch", n], lines, name="t%d" % k)
        assert p.returncode == 0, p.stderr
        commits = [l for l in p.stdout.decode().splitlines() if l.startswith("committed")]
        assert len(commits) == k and all(" count=%d " % n in l for l in commits), commits
        # The segment: exactly one write and one fdatasync per batch of n records.
        assert count(calls, WRITES, "seg-00000000") == k, calls
        assert count(calls, ("fdatasync",), "seg-00000000") == k, calls
        assert count(calls, ("fsync",), "seg-00000000") == 0, calls
        # Everything else (derived files at open and close) does not grow with k.
        results[k] = count(calls, SYNCS) - k
    size = 1 + 50 * 100
    files = size.bit_length() + 2  # node levels + index + blocks
    assert max(results.values()) <= 2 * files + 4, results


def test_cli_reads_the_daemon_config(tmp_path):
    d = tmp_path / "from-config"
    conf = tmp_path / "ledgermq.conf"
    conf.write_text("# as for ledgermqd\ndata_dir %s\nledger_origin example.com/configured\n"
                    "ledger_sync batch\nlistener 1883 127.0.0.1\n" % d)
    cli("-c", conf, "log", "append", "--topic", "t", input=b"a\nb\n", check=0)
    info = cli("-c", conf, "log", "info", check=0).stdout.decode()
    assert "origin: example.com/configured" in info and "size: 2" in info
    assert (d / "ledger" / "META").exists()
    # Flags override the file: -d (anywhere on the line) and --origin.
    d2 = tmp_path / "other"
    cli("log", "append", "-c", conf, "--topic", "t", "-d", d2, input=b"x\n", check=0)
    assert "origin: example.com/configured" in cli("log", "info", datadir=d2,
                                                   check=0).stdout.decode()
    p = cli("-c", conf, "log", "append", "--topic", "t", "--origin", "example.com/else",
            input=b"y\n", check=2)
    assert b"differs" in p.stderr
    # The file is read with the daemon's parser: errors name FILE:LINE.
    bad = tmp_path / "bad.conf"
    bad.write_text("data_dir %s\nledger_sync sometimes\n" % d)
    p = cli("-c", bad, "log", "info", check=2)
    assert (str(bad) + ":2").encode() in p.stderr, p.stderr
    cli("-c", tmp_path / "missing.conf", "log", "info", check=2)
    assert b"-c CONFIG" in cli("--help", check=0).stdout
    if STRACE:
        # ledger_sync batch from the file: no fdatasync per batch; --sync overrides.
        _, calls = traced_append(tmp_path, ["-c", conf, "log", "append", "--topic", "t",
                                            "--batch", 10], ["r%d" % i for i in range(50)])
        assert count(calls, WRITES, "seg-00000000") == 5, calls
        assert count(calls, SYNCS, "seg-00000000") == 0, calls
        _, calls = traced_append(tmp_path, ["-c", conf, "log", "append", "--topic", "t",
                                            "--batch", 10, "--sync", "always"],
                                 ["r%d" % i for i in range(50)], name="t2")
        assert count(calls, ("fdatasync",), "seg-00000000") == 5, calls
    cli("-c", conf, "audit", check=0)


def test_exit_codes_on_a_damaged_log(tmp_path):
    """1 = the log is damaged or tampered (the open or a read found it),
    2 = could not read at all / usage; the same for every command."""
    d = tmp_path / "data"
    append(d, ["line %d" % i for i in range(30)], batch=10)
    seg = d / "ledger" / "seg-00000000"
    clean = seg.read_bytes()
    # A record in the middle: only what reads it fails.
    _, off, n = _index_entry(d, 5)
    _flip(seg, off + 12 + n - 2)
    cli("log", "info", datadir=d, check=0)
    cli("log", "get", 5, datadir=d, check=1)
    cli("log", "get", 5, "--raw", datadir=d, check=1)
    cli("log", "proof", 5, datadir=d, check=1)
    cli("log", "get", 6, datadir=d, check=0)
    cli("audit", datadir=d, check=1)
    # A record in the last block: every open refuses, and so exits 1.
    seg.write_bytes(clean)
    _, off, n = _index_entry(d, 25)
    _flip(seg, off + 12 + n - 2)
    damaged = seg.read_bytes()
    for args in (["key", "show"], ["log", "info"], ["log", "get", 3], ["log", "blocks"],
                 ["log", "checkpoint"], ["log", "proof", 3], ["log", "consistency", 10, 20],
                 ["log", "recover"], ["audit"]):
        p = cli(*args, datadir=d, check=1)
        assert p.stderr or p.stdout
    p = cli("log", "append", "--topic", "t", datadir=d, input=b"more\n", check=1)
    assert b"record 25" in p.stderr, p.stderr
    assert seg.read_bytes() == damaged  # nothing "repaired", nothing appended
    # Could not read / usage: 2.
    for args in (["log", "info"], ["log", "get", 1], ["log", "proof", 1], ["audit"]):
        cli(*args, datadir=tmp_path / "nothing-here", check=2)
    cli("log", "get", "x", datadir=d, check=2)
    cli("log", "proof", 3, "--size", 0, datadir=d, check=2)
