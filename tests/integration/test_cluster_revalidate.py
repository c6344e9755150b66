"""Re-validation at apply time on every cluster node (issue 7 item 2,
docs/CLUSTER.md "Re-validation on every node"): the state machine runs on
the replicated record bytes in log order on each node, refusals are
per-record results (logged alike by every node, sent back to the
proposer with their reason code) and never appended anywhere; the MQTT
DUP flag travels with each record (raft_batch version 2) and the attested
resend window is filled from applied records on every node, so a new
leader answers a DUP resend with the existing record like the old one.
Three daemons on loopback (test_cluster.py's Cluster), every wait bounded,
every process stopped by broker_factory."""
import json
import re
import subprocess

import mqttraw as R
import v5raw as V
from conftest import free_port, ledgermq_only, wait_for
from test_cluster import (LEDGERMQ, Cluster, audit, cluster_status, final_payloads, log_info,
                          records)
from test_ledgered import Device, v5_publish

pytestmark = ledgermq_only("tests ledgermqd's cluster state machine")


class RCluster(Cluster):
    """Three nodes with a signed and an attested ledgered topic and one
    trusted operator key (so devices can be registered through the
    leader)."""

    def __init__(self, broker_factory, tmp_path):
        self.opkey = tmp_path / "op.key"
        p = subprocess.run([LEDGERMQ, "operator", "keygen", "--out", str(self.opkey), "--name",
                            "ops"], capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr
        vkey = p.stdout.decode().strip()
        self.raft = [free_port() for _ in range(3)]
        lines = ["cluster_node %d 127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.raft)]
        lines += ["operator_key %s" % vkey, "ledger_topic sig/# signed"]
        self.nodes = []
        for i in range(3):
            b = broker_factory(config={"ledger_topic": "att/# attested", "ledger_batch_ms": 20,
                                       "cluster_election_ms": 500, "cluster_heartbeat_ms": 50,
                                       "sys_interval": 1},
                               start=False, extra_lines=lines + ["cluster_self %d" % (i + 1)])
            self.nodes.append(b)
        for b in self.nodes:
            b.start()

    def raft_leader(self, exclude=()):
        """The index of the node that is the Raft leader (its own word,
        `ledgermq cluster status`), once one is."""
        self.leader(timeout=20, exclude=exclude)  # a ledgered publish acked somewhere
        found = []

        def look():
            for i, b in enumerate(self.nodes):
                if i in exclude or not b.running():
                    continue
                if cluster_status(b.port)["role"] == "leader":
                    found.append(i)
                    return True
            return False

        assert wait_for(look, 15, 0.3), "no node reports itself leader"
        return found[0]


REFUSED = re.compile(r"cluster: entry (\d+) record (\d+) \(batch \d+ of node (\d+)\) refused: "
                     r"(.+) \((-?\d+)\)$", re.M)


def test_same_sequence_refused_at_apply_on_every_node(broker_factory, tmp_path):
    """Two envelopes of one device with the same sequence number, both
    valid when proposed, pipelined to the leader: the first is recorded,
    the second is refused by the apply of every node (the same entry and
    record, the same reason in each node's log) and its publisher gets
    0x83; an envelope of a revoked device is refused 0x87 the same way;
    all nodes end with byte-identical logs that hold the first envelope
    only."""
    cl = RCluster(broker_factory, tmp_path)
    lead = cl.raft_leader()
    dev = Device(tmp_path, "meter")
    pub = dev.sk.verify_key.encode().hex()
    broker = "127.0.0.1:%d" % cl.nodes[lead].port
    p = subprocess.run([LEDGERMQ, "device", "register", "--broker", broker, "--operator-key",
                        str(cl.opkey), "--pub", pub, "--name", "meter"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("meter-pub").reason == 0
    first, second = dev.py_envelope(5, b"first"), dev.py_envelope(5, b"second")
    v5_publish(c, "sig/m", first, pid=1)
    v5_publish(c, "sig/m", second, pid=2)
    acks = [c.expect5(R.PUBACK, 10) for _ in range(2)]
    assert [(a.pid, a.reason) for a in acks] == [(1, 0), (2, 0x83)]
    assert V.pget(acks[1].props, V.REASON_STRING) == "replayed or out-of-order sequence number"
    # revoked through the leader; an envelope signed before is refused
    late = dev.py_envelope(6, b"after revocation")
    p = subprocess.run([LEDGERMQ, "device", "revoke", "--broker", broker, "--operator-key",
                        str(cl.opkey), "--id", dev.id, "--reason", "test"],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    v5_publish(c, "sig/m", late, pid=3)
    a = c.expect5(R.PUBACK, 10)
    assert (a.pid, a.reason) == (3, 0x87)
    c.close()
    size, root = cl.converged()
    # every node's apply refused the second envelope itself, identically
    seen = []
    for b in cl.nodes:
        assert b.wait_log(REFUSED.pattern, timeout=10), b.log()[-3000:]
        seen.append([m.groups() for m in REFUSED.finditer(b.log())])
    assert seen[0] == seen[1] == seen[2], seen
    assert seen[0][0][3:] == ("replayed or out-of-order sequence number", "-7")
    assert seen[0][0][2] == str(lead + 1)
    cl.stop_all()
    assert [log_info(b.data_dir) for b in cl.nodes] == [(size, root)] * 3
    recs = [records(b.data_dir, size) for b in cl.nodes]
    assert recs[0] == recs[1] == recs[2]
    for b in cl.nodes:
        audit(b.data_dir)
    signed = [json.loads(r) for r in recs[0] if '"device_seq"' in r]
    assert [(j["device_seq"], j["payload"]) for j in signed] == [(5, "first")], signed


def test_dup_resend_answered_by_a_new_leader(broker_factory, tmp_path):
    """An attested QoS 1 message acked by the leader, whose ack the client
    did not see: after the leader is stopped, its DUP=1 resend to the new
    leader is answered (PUBACK 0) with the record that exists, not
    recorded again, on every node; a fresh (DUP=0) copy is recorded."""
    cl = RCluster(broker_factory, tmp_path)
    lead = cl.raft_leader()
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("resender").reason == 0
    v5_publish(c, "att/r", b"reading-1", pid=7)
    assert c.expect5(R.PUBACK, 10).reason == 0
    c.close()
    cl.converged()
    assert cl.nodes[lead].stop() == 0
    new = cl.raft_leader(exclude=(lead,))
    assert new != lead
    others = [i for i in range(3) if i != lead]
    before = log_info(cl.nodes[new].data_dir)[0]
    c = V.Client5(cl.nodes[new].port)
    assert c.connect5("resender").reason == 0
    v5_publish(c, "att/r", b"reading-1", pid=7, dup=True)
    a = c.expect5(R.PUBACK, 10)
    assert (a.pid, a.reason) == (7, 0)
    v5_publish(c, "att/r", b"reading-1", pid=8)  # DUP=0: a new reading, recorded
    a = c.expect5(R.PUBACK, 10)
    assert (a.pid, a.reason) == (8, 0)
    c.close()
    assert wait_for(lambda: all(log_info(cl.nodes[i].data_dir)[0] == before + 1
                                for i in others), 10, 0.2)
    cl.nodes[lead].start()
    size, root = cl.converged(30)
    cl.stop_all()
    assert [log_info(b.data_dir) for b in cl.nodes] == [(size, root)] * 3
    for b in cl.nodes:
        n = sum(1 for r in records(b.data_dir, size)
                if json.loads(r).get("payload") == "reading-1")
        assert n == 2, (b.data_dir, n)
    assert b"reading-1" in final_payloads(cl.nodes[lead].data_dir, size)
