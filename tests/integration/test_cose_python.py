"""COSE_Sign1 / CWT interoperability, written from RFC 9052 and RFC 8392
with cbor2 + PyNaCl, independently of the C code: envelopes and tokens
built here must verify with ledgermq's C verifier, and an envelope the C
code signs must verify here. The C side is driven through the helper modes
of the test_cose unit-test binary ($LMQ_BUILD_DIR/test_cose; see the top of
tests/unit/test_cose.c). Run with /usr/bin/python3 -m pytest."""
import base64
import hashlib
import json
import os
import subprocess
import tempfile

import cbor2
import nacl.signing
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("LMQ_BUILD_DIR", os.path.join(REPO, "build"))
TEST_COSE = os.path.join(BUILD_DIR, "test_cose")
TESTDATA = os.path.join(REPO, "..", "shared", "testdata", "cose")

pytestmark = pytest.mark.skipif(not os.path.exists(TEST_COSE), reason="test_cose not built")

SEQ_LABEL = -65537   # docs/FORMATS.md "Device envelope (COSE_Sign1)"
TIME_LABEL = -65538


def device_id(pk: bytes) -> str:
    h = hashlib.sha256(b"ledgermq device v1" + pk).digest()[:20]
    return "d-" + base64.b32encode(h).decode().lower().rstrip("=")


def sign1(sk, protected: dict, unprotected: dict, payload: bytes, aad=b"", tag=True,
          protected_bytes=None) -> bytes:
    """RFC 9052 §4.4: Signature1 over the serialized protected header."""
    prot = protected_bytes if protected_bytes is not None else cbor2.dumps(protected, canonical=True)
    tbs = cbor2.dumps(["Signature1", prot, aad, payload])
    sig = sk.sign(tbs).signature
    msg = [prot, unprotected, payload, sig]
    return cbor2.dumps(cbor2.CBORTag(18, msg) if tag else msg, canonical=True)


def c_verify(data: bytes, pk: bytes, mode="envelope", **env):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data)
        path = f.name
    try:
        e = dict(os.environ, LMQ_COSE_VERIFY_FILE=path, LMQ_COSE_VERIFY_PUB=pk.hex(),
                 LMQ_COSE_VERIFY_MODE=mode)
        e.update(env)
        p = subprocess.run([TEST_COSE], env=e, capture_output=True, text=True, timeout=30)
        assert p.returncode in (0, 1), p.stderr
        return p.returncode, p.stdout.strip()
    finally:
        os.unlink(path)


@pytest.fixture
def key():
    sk = nacl.signing.SigningKey(bytes(range(32)))
    return sk, bytes(sk.verify_key)


def envelope(sk, pk, seq=1, t=1767225600000, payload=b'{"t":21.5}'):
    prot = {1: -8, 4: device_id(pk).encode(), SEQ_LABEL: seq, TIME_LABEL: t}
    return sign1(sk, prot, {}, payload)


def test_python_envelope_verifies_in_c(key):
    sk, pk = key
    rc, out = c_verify(envelope(sk, pk, seq=42, t=1767225600123), pk)
    assert rc == 0, out
    assert out == f'ok kid={device_id(pk)} seq=42 time=1767225600123 payload={{"t":21.5}}'


def test_big_sequence_and_time(key):
    sk, pk = key
    rc, out = c_verify(envelope(sk, pk, seq=2**64 - 1, t=2**40), pk)
    assert rc == 0, out
    assert f"seq={2**64 - 1} " in out


def test_tampered_and_wrong_key_refused(key):
    sk, pk = key
    msg = bytearray(envelope(sk, pk))
    msg[-70] ^= 1  # last payload byte
    rc, out = c_verify(bytes(msg), pk)
    assert rc == 1 and "signature does not verify" in out
    other = bytes(nacl.signing.SigningKey(b"\x07" * 32).verify_key)
    rc, out = c_verify(envelope(sk, pk), other)
    assert rc == 1 and "signature does not verify" in out


def test_missing_fields_refused(key):
    sk, pk = key
    kid = device_id(pk).encode()
    cases = [
        ({1: -8, 4: kid, SEQ_LABEL: 1}, {}, "timestamp missing"),
        ({1: -8, 4: kid, TIME_LABEL: 1}, {}, "sequence number missing"),
        ({1: -8, SEQ_LABEL: 1, TIME_LABEL: 1}, {4: kid}, "kid) missing"),
        ({1: -7, 4: kid, SEQ_LABEL: 1, TIME_LABEL: 1}, {}, "not EdDSA"),
        ({4: kid, SEQ_LABEL: 1, TIME_LABEL: 1}, {1: -8}, "not EdDSA"),
    ]
    for prot, unprot, why in cases:
        rc, out = c_verify(sign1(sk, prot, unprot, b"x"), pk)
        assert rc == 1 and why in out, (prot, out)


def test_untagged_and_wrong_tag(key):
    sk, pk = key
    prot = {1: -8, 4: device_id(pk).encode(), SEQ_LABEL: 1, TIME_LABEL: 1}
    rc, out = c_verify(sign1(sk, prot, {}, b"x", tag=False), pk)
    assert rc == 1 and "tag 18" in out
    # generic Sign1 mode accepts an untagged message
    rc, out = c_verify(sign1(sk, {1: -8}, {}, b"x", tag=False), pk, mode="sign1")
    assert rc == 0, out


def test_protected_header_used_as_received(key):
    """Non-shortest encoding inside the protected bstr: a verifier that
    re-encoded the header would compute a different Sig_structure; ours
    refuses it as non-deterministic instead of silently re-encoding."""
    sk, pk = key
    kid = device_id(pk).encode()
    prot = (b"\xa4" + b"\x01\x27" + b"\x04" + cbor2.dumps(kid) + b"\x3a\x00\x01\x00\x00"
            + b"\x18\x05" + b"\x3a\x00\x01\x00\x01" + b"\x19\x00\x07")  # 7 as a 2-byte uint
    msg = sign1(sk, None, {}, b"x", protected_bytes=prot)
    rc, out = c_verify(msg, pk)
    assert rc == 1 and "deterministic" in out


def test_cose_wg_vector_sig01():
    with open(os.path.join(TESTDATA, "eddsa-sig-01.json")) as f:
        v = json.load(f)
    data = bytes.fromhex(v["output"]["cbor"])
    pk = bytes.fromhex(v["input"]["sign0"]["key"]["x_hex"])
    rc, out = c_verify(data, pk, mode="sign1")
    assert rc == 0, out
    # and our Python construction reproduces it too
    sk = nacl.signing.SigningKey(bytes.fromhex(v["input"]["sign0"]["key"]["d_hex"]))
    again = sign1(sk, {1: -8, 3: 0}, {4: b"11"}, v["input"]["plaintext"].encode())
    assert again == data


def test_c_envelope_verifies_in_python(tmp_path):
    seed = bytes(range(100, 132))
    out = tmp_path / "env.cose"
    e = dict(os.environ, LMQ_COSE_SIGN_OUT=str(out), LMQ_COSE_SIGN_SEED=seed.hex(),
             LMQ_COSE_SIGN_SEQ="9", LMQ_COSE_SIGN_TIME="1767225600999",
             LMQ_COSE_SIGN_PAYLOAD="meter reading")
    p = subprocess.run([TEST_COSE], env=e, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    sk = nacl.signing.SigningKey(seed)
    pk = bytes(sk.verify_key)
    assert p.stdout.strip() == device_id(pk)
    data = out.read_bytes()
    msg = cbor2.loads(data)
    assert isinstance(msg, cbor2.CBORTag) and msg.tag == 18
    prot_bytes, unprot, payload, sig = msg.value
    assert unprot == {} and payload == b"meter reading" and len(sig) == 64
    prot = cbor2.loads(prot_bytes)
    assert prot == {1: -8, 4: device_id(pk).encode(), SEQ_LABEL: 9, TIME_LABEL: 1767225600999}
    tbs = cbor2.dumps(["Signature1", prot_bytes, b"", payload])
    nacl.signing.VerifyKey(pk).verify(tbs, sig)  # raises if invalid
    # deterministic: re-encoding everything gives the same bytes
    assert cbor2.dumps(msg, canonical=True) == data


def cwt(sk, pk, aud="lmq://broker.test", iat=1767225600, exp=1767225900, sub=None, tag61=False):
    did = device_id(pk)
    claims = {1: did, 2: sub or did, 3: aud, 4: exp, 6: iat, 7: os.urandom(16)}
    msg = sign1(sk, {1: -8, 4: did.encode()}, {}, cbor2.dumps(claims, canonical=True))
    return b"\xd8\x3d" + msg if tag61 else msg


def test_python_cwt_verifies_in_c(key):
    sk, pk = key
    env = {"LMQ_CWT_AUD": "lmq://broker.test", "LMQ_CWT_NOW": "1767225700"}
    rc, out = c_verify(cwt(sk, pk), pk, mode="cwt", **env)
    assert rc == 0 and out == f"ok sub={device_id(pk)}", out
    rc, out = c_verify(cwt(sk, pk, tag61=True), pk, mode="cwt", **env)
    assert rc == 0, out
    rc, out = c_verify(cwt(sk, pk, aud="lmq://other"), pk, mode="cwt", **env)
    assert rc == 1 and "another audience" in out
    rc, out = c_verify(cwt(sk, pk, iat=1767225000, exp=1767225100), pk, mode="cwt", **env)
    assert rc == 1 and "expired" in out
    rc, out = c_verify(cwt(sk, pk, iat=1767226000, exp=1767226300), pk, mode="cwt", **env)
    assert rc == 1 and "not yet valid" in out
    rc, out = c_verify(cwt(sk, pk, sub="d-someoneelse"), pk, mode="cwt", **env)
    assert rc == 1 and "subject" in out


def test_smart_meter_publishes_signed_readings(broker, tmp_path):
    """sdk/examples/smart_meter (built with `make -C sdk`) publishes QoS 1
    envelopes over its raw MQTT client; a paho subscriber receives them and
    each one verifies here with PyNaCl and in the C verifier."""
    from conftest import PahoClient
    sdk = os.path.join(REPO, "sdk")
    p = subprocess.run(["make", "-s", "-C", sdk], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    sub = PahoClient(broker.port)
    sub.subscribe("meters/+/readings", qos=1)
    keyfile = str(tmp_path / "meter.key")
    args = [os.path.join(sdk, "examples", "smart_meter"), "-k", keyfile, "-n", "3", "-i", "0",
            "127.0.0.1", str(broker.port), "meters/m1/readings"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert oct(os.stat(keyfile).st_mode & 0o777) == "0o600"
    seed = bytes.fromhex(open(keyfile).read().strip())
    pk = bytes(nacl.signing.SigningKey(seed).verify_key)
    assert p.stdout.splitlines()[0] == "device " + device_id(pk)
    seqs = []
    for _ in range(3):
        m = sub.get()
        msg = cbor2.loads(m.payload)
        prot_bytes, _unprot, payload, sig = msg.value
        nacl.signing.VerifyKey(pk).verify(cbor2.dumps(["Signature1", prot_bytes, b"", payload]), sig)
        prot = cbor2.loads(prot_bytes)
        assert prot[4] == device_id(pk).encode()
        seqs.append(prot[SEQ_LABEL])
        rc, out = c_verify(m.payload, pk)
        assert rc == 0, out
    assert seqs == [1, 2, 3]
    # a restart continues the sequence
    p = subprocess.run(args[:4] + ["1"] + args[5:], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert cbor2.loads(cbor2.loads(sub.get().payload).value[0])[SEQ_LABEL] == 4
    sub.c.disconnect()
