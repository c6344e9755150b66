"""`ledgermq device|operator|sign|verify-envelope` on a temporary data dir:
device keys (mode 0600, id derivation re-computed here from
docs/FORMATS.md "Device id"), registry records through the CLI (register,
list, show, rotate, revoke, the rules' refusals), `audit` still clean
afterwards, the index rebuilt after it is deleted, a sign/verify-envelope
round trip with tampering refused, and an independent check (cbor2 +
PyNaCl, written from docs/FORMATS.md "Registry records") of a registry
record's operator signature taken from `ledgermq log get INDEX --raw`.

LMQ_BUILD_DIR names the build dir holding `ledgermq` (default <repo>/build).
"""
import base64
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess

import nacl.exceptions
import nacl.signing
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD_DIR = os.environ.get("LMQ_BUILD_DIR", os.path.join(REPO, "build"))
LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")

pytestmark = pytest.mark.skipif(not os.path.exists(LEDGERMQ),
                                reason="ledgermq not built in " + BUILD_DIR)

T0 = 1767225600000


def cli(*args, datadir=None, input=None, check=None):
    cmd = [LEDGERMQ] + (["-d", str(datadir)] if datadir else []) + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, timeout=120)
    if check is not None:
        assert p.returncode == check, (cmd, p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


def device_id(pk):
    """FORMATS.md "Device id": "d-" + base32lower_nopad(SHA-256(domain || pk)[0:20])."""
    h = hashlib.sha256(b"ledgermq device v1" + pk).digest()[:20]
    return "d-" + base64.b32encode(h).decode().lower().rstrip("=")


def keygen(path):
    p = cli("device", "keygen", "--out", path, check=0)
    lines = dict(l.split(": ", 1) for l in p.stdout.decode().splitlines())
    return lines["id"], base64.b64decode(lines["public"])


def operator_keygen(path, name="ops"):
    p = cli("operator", "keygen", "--out", path, "--name", name, check=0)
    return p.stdout.decode().strip()


@pytest.fixture
def tmp(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_device_keygen(tmp):
    key = tmp / "dev.key"
    did, pk = keygen(key)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert len(pk) == 32
    assert did == device_id(pk)
    text = key.read_text()
    assert text.startswith("ledgermq-ed25519-secret-key-v1\n")
    # refuses to overwrite, leaves the key alone
    p = cli("device", "keygen", "--out", key, check=2)
    assert b"refusing" in p.stderr
    assert key.read_text() == text
    # operator keys: the verifier key string, also written to FILE.vkey
    vkey = operator_keygen(tmp / "op.key", "plant-ops")
    name, keyid, b = vkey.split("+", 2)
    assert name == "plant-ops"
    raw = base64.b64decode(b)
    assert raw[0] == 1 and len(raw) == 33
    assert keyid == hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    assert stat.S_IMODE(os.stat(tmp / "op.key").st_mode) == 0o600
    assert (tmp / "op.key.vkey").read_text().strip() == vkey


def show(datadir, did, *extra, check=0):
    p = cli("device", "show", did, *extra, datadir=datadir, check=check)
    return json.loads(p.stdout) if check == 0 else p


def test_registry_cli(tmp):
    data = tmp / "data"
    op = tmp / "op.key"
    vkey = operator_keygen(op)
    did, pk = keygen(tmp / "dev.key")
    did2, pk2 = keygen(tmp / "dev2.key")
    _, newpk = keygen(tmp / "new.key")
    # a message first, so registry records are not at index 0
    cli("log", "append", "--topic", "t/x", datadir=data, input=b"hello\n", check=0)

    p = cli("device", "register", "--operator-key", op, "--key", tmp / "dev.key",
            "--name", "meter-01", "--attr", "model=KM-200", "--attr", "owner=acme",
            "--attr", "location=hall 3", "--time", T0, datadir=data, check=0)
    out = json.loads(p.stdout)
    assert out["index"] == 1
    d = out["device"]
    assert d["id"] == did and d["status"] == "active"
    assert base64.b64decode(d["public_key"]) == pk
    assert d["name"] == "meter-01"
    assert d["attributes"] == {"model": "KM-200", "owner": "acme", "location": "hall 3"}
    assert d["registered_at_ms"] == T0 and d["registered_index"] == 1
    assert d["operator"] == vkey
    g = json.loads(cli("log", "get", 1, datadir=data, check=0).stdout)
    assert g["kind"] == "device_registration" and g["device_id"] == did
    assert g["attributes"]["location"] == "hall 3" and g["operator"] == vkey
    # register by --pub (hex) with the operator's key trusted explicitly
    cli("device", "register", "--operator-key", op, "--pub", pk2.hex(), "--name", "meter-02",
        "--trust", vkey, datadir=data, check=0)

    devices = json.loads(cli("device", "list", datadir=data, check=0).stdout)
    assert [x["id"] for x in devices] == sorted([did, did2])

    # the rules, through the CLI: exit 1 with the reason
    p = cli("device", "register", "--operator-key", op, "--pub", base64.b64encode(pk).decode(),
            "--name", "again", datadir=data, check=1)
    assert b"already registered" in p.stderr
    unknown = device_id(b"\x07" * 32)
    p = cli("device", "revoke", "--operator-key", op, "--id", unknown, datadir=data, check=1)
    assert b"not registered" in p.stderr
    p = cli("device", "rotate", "--operator-key", op, "--id", did, "--pub", pk2.hex(),
            datadir=data, check=1)
    assert b"public key" in p.stderr

    # rotate: same id, new key
    cli("device", "rotate", "--operator-key", op, "--id", did, "--pub", tmp / "new.key",
        datadir=data, check=0)
    d = show(data, did)
    assert base64.b64decode(d["public_key"]) == newpk
    assert d["rotations"] == 1 and d["status"] == "active"
    # revoke, then rotating or revoking again is refused
    cli("device", "revoke", "--operator-key", op, "--id", did, "--reason", "stolen",
        datadir=data, check=0)
    d = show(data, did)
    assert d["status"] == "revoked" and d["reason"] == "stolen"
    p = cli("device", "rotate", "--operator-key", op, "--id", did,
            "--pub", base64.b64encode(b"\x09" * 32).decode(), datadir=data, check=1)
    assert b"revoked" in p.stderr
    cli("device", "revoke", "--operator-key", op, "--id", did, datadir=data, check=1)
    show(data, unknown, check=1)

    # the ledger with registry records still audits clean
    p = cli("audit", "--quiet", datadir=data)
    assert p.returncode == 0, p.stdout + p.stderr

    # lose the index: list without --trust cannot rebuild it ...
    before = json.loads(cli("device", "list", datadir=data, check=0).stdout)
    shutil.rmtree(data / "registry")
    cli("device", "list", datadir=data, check=2)
    # ... with the operator key trusted it is rebuilt from the ledger, same result
    after = json.loads(cli("device", "list", "--trust", vkey, datadir=data, check=0).stdout)
    assert after == before
    # trusting another operator only: operator ops's records do not count
    other = operator_keygen(tmp / "other.key", "other")
    assert json.loads(cli("device", "list", "--trust", other, datadir=data,
                          check=0).stdout) == []
    assert show(data, did, "--trust", vkey)["status"] == "revoked"

    # the node's config: its operator_key lines are the trusted set
    conf = tmp / "ledgermq.conf"
    conf.write_text("data_dir %s\noperator_key %s\n" % (data, vkey))
    shutil.rmtree(data / "registry")
    via_conf = json.loads(cli("-c", conf, "device", "list", check=0).stdout)
    assert via_conf == before
    conf.write_text("data_dir %s\noperator_key %s\n" % (data, other))
    assert json.loads(cli("-c", conf, "device", "list", check=0).stdout) == []
    conf.write_text("data_dir %s\noperator_key %s\n" % (data, vkey[:-2] + "AA"))
    p = cli("-c", conf, "device", "list", check=2)
    assert b"operator_key" in p.stderr


def test_register_refused_on_running_node(tmp):
    """A running broker holds the ledger lock: offline registry writes refuse,
    reads of the index still work."""
    data = tmp / "data"
    op = tmp / "op.key"
    vkey = operator_keygen(op)
    did, _ = keygen(tmp / "dev.key")
    _, pk2 = keygen(tmp / "dev2.key")
    cli("device", "register", "--operator-key", op, "--key", tmp / "dev.key", "--name", "m1",
        datadir=data, check=0)
    with open(data / "ledger" / "LOCK", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        p = cli("device", "register", "--operator-key", op, "--pub", pk2.hex(), "--name", "m2",
                datadir=data, check=2)
        assert b"in use" in p.stderr
        cli("device", "revoke", "--operator-key", op, "--id", did, datadir=data, check=2)
        assert show(data, did)["status"] == "active"
        assert show(data, did, "--trust", vkey)["status"] == "active"


def test_registry_record_verified_independently(tmp):
    """Decode a registry record from `log get --raw` and verify the operator
    signature from docs/FORMATS.md alone."""
    cbor2 = pytest.importorskip("cbor2")
    data = tmp / "data"
    op = tmp / "op.key"
    vkey = operator_keygen(op, "fleet-ops")
    did, pk = keygen(tmp / "dev.key")
    p = cli("device", "register", "--operator-key", op, "--key", tmp / "dev.key", "--name",
            "truck-7", "--attr", "batch=B12", "--time", T0, datadir=data, check=0)
    index = json.loads(p.stdout)["index"]
    raw = bytes.fromhex(cli("log", "get", index, "--raw", datadir=data,
                            check=0).stdout.decode().strip())
    rec = cbor2.loads(raw)
    assert cbor2.dumps(rec, canonical=True) == raw  # deterministic encoding
    assert rec[0] == 3 and rec[1] == 1
    assert rec[2] == did == device_id(rec[3]) and rec[3] == pk
    assert rec[4] == "truck-7" and rec[5] == {"batch": "B12"} and rec[6] == T0
    assert rec[14] == vkey
    # the operator key from its verifier key string (C2SP note key, type 0x01)
    name, keyid, b = rec[14].split("+", 2)
    kraw = base64.b64decode(b)
    assert kraw[0] == 1
    assert keyid == hashlib.sha256(name.encode() + b"\n" + kraw).digest()[:4].hex()
    # signed bytes: domain || deterministic CBOR of the record without key 15
    body = {k: v for k, v in rec.items() if k != 15}
    msg = b"ledgermq registry record v1" + cbor2.dumps(body, canonical=True)
    assert msg[len(b"ledgermq registry record v1"):] == bytes([raw[0] - 1]) + raw[1:-67]
    vk = nacl.signing.VerifyKey(kraw[1:])
    vk.verify(msg, rec[15])
    # a changed field no longer verifies
    body[4] = "truck-8"
    with pytest.raises(nacl.exceptions.BadSignatureError):
        vk.verify(b"ledgermq registry record v1" + cbor2.dumps(body, canonical=True), rec[15])


def test_sign_verify_envelope(tmp):
    key = tmp / "dev.key"
    did, pk = keygen(key)
    payload = b'{"kwh":12.5}'
    env = cli("sign", "--key", key, "--seq", 7, "--time", T0, input=payload, check=0).stdout
    assert env[0] == 0xd2  # tag 18
    assert payload in env
    for pub in (base64.b64encode(pk).decode(), pk.hex(), str(key)):
        p = cli("verify-envelope", "--pub", pub, input=env, check=0)
        v = json.loads(p.stdout)
        assert v == {"valid": True, "kid": did, "seq": 7, "time_ms": T0,
                     "payload_len": len(payload), "kid_is_key_id": True}
    # a flipped byte anywhere (header, payload, signature) is refused
    for pos in (10, env.index(payload) + 3, len(env) - 1):
        bad = bytearray(env)
        bad[pos] ^= 0x01
        p = cli("verify-envelope", "--pub", pk.hex(), input=bytes(bad))
        assert p.returncode == 1, (pos, p.stdout, p.stderr)
        assert p.stderr.startswith(b"ledgermq: invalid envelope")
    # another key
    _, pk2 = keygen(tmp / "other.key")
    p = cli("verify-envelope", "--pub", pk2.hex(), input=env, check=1)
    assert b"signature" in p.stderr
    # not an envelope at all, truncated
    cli("verify-envelope", "--pub", pk.hex(), input=b"hello", check=1)
    cli("verify-envelope", "--pub", pk.hex(), input=env[:-5], check=1)
    # usage errors
    cli("verify-envelope", input=env, check=2)
    cli("verify-envelope", "--pub", "nonsense", input=env, check=2)
    cli("sign", "--key", key, input=payload, check=2)
    cli("sign", "--key", tmp / "missing.key", "--seq", 1, input=payload, check=2)
    # the envelope checked independently with PyNaCl over the COSE Sig_structure
    cbor2 = pytest.importorskip("cbor2")
    tag = cbor2.loads(env)
    assert tag.tag == 18
    prot, unprot, pl, sig = tag.value
    assert cbor2.loads(prot) == {1: -8, 4: did.encode(), -65537: 7, -65538: T0}
    assert unprot == {} and pl == payload
    sig_structure = cbor2.dumps(["Signature1", prot, b"", pl])
    nacl.signing.VerifyKey(pk).verify(sig_structure, sig)
