"""Signed ledgered messages verified in batches (issue 6's signed target,
src/broker/ledger_pipe.c verification jobs): bursts from several devices,
each on its own MQTT 5 connection, pipelined and interleaved so that the
broker's jobs hold messages of several devices at once, with forged
signatures, replays, older sequence numbers, unknown devices and clock
skew mixed in. Every PUBACK comes back in publish order with that
message's own reason code, and the log holds exactly the accepted ones,
in each device's order."""
import os

import pytest

import mqttraw as R
import v5raw as V
from conftest import IS_MOSQUITTO, wait_for
from test_ledgered import LEDGERMQ, Node, now_ms, segment_records, v5_publish

pytestmark = [
    pytest.mark.skipif(IS_MOSQUITTO, reason="ledgered topics are ledgermq's"),
    pytest.mark.skipif(not os.path.exists(LEDGERMQ), reason="ledgermq not built"),
]

DEVICES = ("d1", "d2", "d3", "d4")
PER_DEVICE = 80

REASONS = {
    "ok": None,
    "forged": "bad signature",
    "unknown": "unknown device",
    "replay": "replayed or out-of-order sequence number",
    "older": "replayed or out-of-order sequence number",
    "skew": "clock skew",
}
CODES = {"ok": 0x00, "forged": 0x87, "unknown": 0x87, "replay": 0x83, "older": 0x83, "skew": 0x83}


def _plan(node, name):
    """PER_DEVICE messages of device NAME: (kind, envelope, seq if accepted)."""
    d, stranger = node.dev[name], node.dev["stranger"]
    out, accepted = [], []
    seq = 1000
    for i in range(PER_DEVICE):
        kind = {7: "forged", 11: "replay", 13: "unknown", 17: "skew", 19: "older"}.get(i % 20, "ok")
        if kind == "replay" and not accepted:
            kind = "ok"
        if kind == "ok":
            seq += 1
            env = d.py_envelope(seq, b"%s-%d" % (name.encode(), seq))
            accepted.append((seq, env))
            out.append((kind, env, seq))
        elif kind == "forged":
            seq += 1
            env = bytearray(d.py_envelope(seq, b"forged"))
            env[-7] ^= 0x20
            out.append((kind, bytes(env), None))
        elif kind == "replay":  # the same bytes as an accepted message
            out.append((kind, accepted[-3 if len(accepted) >= 3 else -1][1], None))
        elif kind == "older":  # never seen, but below the last accepted
            out.append((kind, d.py_envelope(accepted[-1][0] - 1, b"older"), None))
        elif kind == "unknown":
            out.append((kind, stranger.py_envelope(seq, b"who"), None))
        else:
            seq += 1
            out.append((kind, d.py_envelope(seq, b"late", t=now_ms() - 3600 * 1000), None))
    return out


def test_signed_burst_batched_verdicts(broker_factory, tmp_path):
    node = Node(broker_factory, tmp_path, ("sig/# signed",), devices=DEVICES,
                config={"ledger_batch_ms": 2})
    plans = {name: _plan(node, name) for name in DEVICES}
    conns = {name: node.v5("pub-" + name) for name in DEVICES}
    # Interleaved, without waiting for any ack: while a job verifies, the
    # next messages of every device queue up for the following one.
    for i in range(PER_DEVICE):
        for name in DEVICES:
            v5_publish(conns[name], "sig/" + name, plans[name][i][1], qos=1, pid=i + 1)
    for name in DEVICES:
        got = []
        for _ in range(PER_DEVICE):
            p = conns[name].expect5(R.PUBACK, 20.0)
            got.append((p.pid, p.reason, V.pget(p.props, V.REASON_STRING)))
        want = [(i + 1, CODES[k], REASONS[k]) for i, (k, _, _) in enumerate(plans[name])]
        assert got == want, name
    for name in DEVICES:
        conns[name].close()
    # Every signed message went through a verification job (the counters
    # are published every sys_interval).
    total = len(DEVICES) * PER_DEVICE
    sys = node.v5("sys")
    sys.subscribe5([("$SYS/ledger/verify/#", 0)])
    seen = {}

    def got_all():
        p = sys.recv5(0.5)
        if p is not None and p.type == R.PUBLISH:
            seen[p.topic] = int(p.payload)
        return seen.get("$SYS/ledger/verify/messages") == total and len(seen) == 3

    assert wait_for(got_all, 10), seen
    jobs, biggest = seen["$SYS/ledger/verify/jobs"], seen["$SYS/ledger/verify/max_job"]
    assert 1 <= jobs <= total and 1 <= biggest <= 64
    print("%d signed messages in %d verification jobs, largest %d" % (total, jobs, biggest))
    sys.close()
    log = node.b.log()
    n_refused = sum(1 for name in DEVICES for k, _, _ in plans[name] if k != "ok")
    assert log.count("ledger: refused PUBLISH from client pub-") == n_refused
    assert node.stop_and_audit(decode=False) == sum(
        1 for name in DEVICES for k, _, _ in plans[name] if k == "ok")
    recs = segment_records(node.data)[node.base:]
    for name in DEVICES:
        d = node.dev[name]
        mine = [(r[7], r[3]) for r in recs if r.get(5) == d.id]
        assert mine == [(s, b"%s-%d" % (name.encode(), s))
                        for k, _, s in plans[name] if k == "ok"], name
