"""Quorum policy of `ledgermq verify-receipt` and `ledgermq watch`
(--key VKEY ... --quorum K): a receipt's checkpoint may carry several
C2SP signed-note signature lines; it verifies only if at least K distinct
given keys signed it. Extra signature lines are made here with PyNaCl from
the signed-note spec (not with our C code)."""
import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading

import nacl.signing
import pytest

import mqttraw as R
from conftest import BUILD_DIR
from test_ledger_api import _read_packet

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")
ORIGIN = "example.com/quorum"
DASH = "\u2014"

pytestmark = pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built")


def cli(*args, datadir=None, check=None, input=None):
    cmd = [LEDGERMQ] + (["-d", str(datadir)] if datadir else []) + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=60)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout, p.stderr)
    return p


def signer(name, seed):
    sk = nacl.signing.SigningKey(bytes([seed]) * 32)
    pk = bytes(sk.verify_key)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
    vkey = "%s+%s+%s" % (name, kid.hex(), base64.b64encode(b"\x01" + pk).decode())
    return sk, kid, vkey


def add_signature(note, name, sk, kid):
    """Appends one Ed25519 signature line (C2SP signed-note) to NOTE."""
    text = note[:note.rindex("\n\n") + 1]
    sig = sk.sign(text.encode()).signature
    return note + "%s %s %s\n" % (DASH, name, base64.b64encode(kid + sig).decode())


@pytest.fixture(scope="module")
def receipts(tmp_path_factory):
    """Receipt files whose checkpoint carries 1 (the node's), 2 and 3
    signatures, one also signed by a stranger; and the three vkeys."""
    d = tmp_path_factory.mktemp("quorum")
    data = d / "data"
    cli("log", "append", "--topic", "t", "--origin", ORIGIN, datadir=data,
        input=b"a\nb\nc\n", check=0)
    node_vkey = cli("key", "show", datadir=data, check=0).stdout.decode().strip()
    r = json.loads(cli("log", "proof", 1, datadir=data, check=0).stdout)
    # two more "nodes" under the same name (cosigning nodes of one ledger)
    b_sk, b_kid, b_vkey = signer(ORIGIN, 7)
    c_sk, c_kid, c_vkey = signer(ORIGIN, 8)
    s_sk, s_kid, _ = signer("stranger.example", 9)
    notes = [r["checkpoint"]]
    notes.append(add_signature(notes[0], ORIGIN, b_sk, b_kid))
    notes.append(add_signature(notes[1], ORIGIN, c_sk, c_kid))
    files = {}
    for n, note in enumerate(notes, 1):
        files[n] = d / ("r%d.json" % n)
        files[n].write_text(json.dumps(dict(r, checkpoint=note)))
    files["stranger"] = d / "rs.json"
    files["stranger"].write_text(json.dumps(
        dict(r, checkpoint=add_signature(notes[0], "stranger.example", s_sk, s_kid))))
    return files, [node_vkey, b_vkey, c_vkey]


def verify(f, keys, quorum=None):
    args = ["verify-receipt", f]
    for k in keys:
        args += ["--key", k]
    if quorum is not None:
        args += ["--quorum", quorum]
    return cli(*args)


@pytest.mark.parametrize("sigs", [1, 2, 3])
@pytest.mark.parametrize("quorum", [1, 2, 3])
def test_quorum_of_distinct_signers(receipts, sigs, quorum):
    files, keys = receipts
    p = verify(files[sigs], keys, quorum)
    if quorum <= sigs:
        assert p.returncode == 0, p.stderr
        assert b"verified" in p.stdout
    else:
        assert p.returncode == 1
        assert b"signed by fewer keys than the quorum" in p.stderr


def test_a_key_given_twice_counts_once(receipts):
    files, keys = receipts
    p = verify(files[1], [keys[0], keys[0]], 2)
    assert p.returncode == 1 and b"signed by fewer keys than the quorum" in p.stderr
    assert verify(files[2], [keys[0], keys[0], keys[1]], 2).returncode == 0


def test_unknown_signatures_ignored(receipts):
    files, keys = receipts
    assert verify(files["stranger"], keys[:1], 1).returncode == 0
    p = verify(files["stranger"], keys, 2)
    assert p.returncode == 1 and b"signed by fewer keys than the quorum" in p.stderr


def test_without_quorum_one_given_key_suffices(receipts):
    files, keys = receipts
    assert verify(files[1], keys).returncode == 0
    assert verify(files[3], keys[2:]).returncode == 0
    # a key that signed nothing: not verified
    _, _, other = signer("other.example", 10)
    p = verify(files[3], [other])
    assert p.returncode == 1 and b"not signed by any of the given keys" in p.stderr


def test_quorum_above_the_keys_given_is_a_usage_error(receipts):
    files, keys = receipts
    p = verify(files[3], keys, 4)
    assert p.returncode == 2 and b"--quorum 4 exceeds the 3 keys given" in p.stderr
    assert verify(files[3], keys, 0).returncode == 2


def serve_checkpoint(note):
    """A fake MQTT 5 broker on loopback that answers CONNECT and the
    $ledger/checkpoint SUBSCRIBE with NOTE; returns (port, thread, socket)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
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
                        conn.sendall(R.packet(R.PUBLISH, 0, R.mstr("$ledger/checkpoint") +
                                              b"\x00" + note.encode()))
                elif t >> 4 == 14:                               # DISCONNECT
                    break
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return srv.getsockname()[1], th, srv


@pytest.mark.parametrize("sigs,quorum,ok", [(1, 1, True), (1, 2, False), (2, 2, True),
                                            (3, 3, True), (2, 3, False)])
def test_watch_quorum(receipts, sigs, quorum, ok):
    files, keys = receipts
    note = json.loads(files[sigs].read_text())["checkpoint"]
    port, th, srv = serve_checkpoint(note)
    try:
        args = ["watch", "--broker", "127.0.0.1:%d" % port, "--count", "1", "--timeout", "5000",
                "--quorum", quorum]
        for k in keys:
            args += ["--key", k]
        p = cli(*args)
    finally:
        srv.close()
        th.join(timeout=15)
    if ok:
        assert p.returncode == 0, p.stderr
        assert b"verified, first" in p.stdout
    else:
        assert p.returncode == 1
        assert b"signed by fewer keys than the quorum" in p.stderr


def test_watch_key_given_twice_counts_once(receipts):
    files, keys = receipts
    port, th, srv = serve_checkpoint(json.loads(files[1].read_text())["checkpoint"])
    try:
        p = cli("watch", "--broker", "127.0.0.1:%d" % port, "--count", "1", "--timeout", "5000",
                "--key", keys[0], "--key", keys[0], "--quorum", 2)
    finally:
        srv.close()
        th.join(timeout=15)
    assert p.returncode == 1 and b"signed by fewer keys than the quorum" in p.stderr
