"""Cluster membership on running daemons (issue 7 item 1, docs/CLUSTER.md
"Membership"): `ledgermq cluster add|remove|transfer` send a request on
$ledger/admin/cluster to the leader. A 4th node started with cluster_join
and a fresh data dir is added, catches up to the same ledger (size, root,
audit) and shows as a voter; leadership is transferred to a chosen node;
a node is removed and the others keep committing. Refusals: a session
that is not a password_file user gets 0x87, a follower 0x97 naming the
leader, unknown / duplicate ids and malformed requests a JSON error. The
clusters reuse test_cluster.py's helpers; every process is stopped at the
end (broker_factory), every wait is bounded."""
import json
import re
import struct
import subprocess

import mqttraw as R
import v5raw as V
from conftest import free_port, ledgermq_only, wait_for
from test_cluster import LEDGERMQ, TOPICS, Cluster, audit, records

pytestmark = ledgermq_only("tests ledgermqd's cluster administration")

USER, PASSWORD = "op", "cluster secret"


class AdminCluster(Cluster):
    """test_cluster.Cluster whose nodes also take a password_file user
    (the operator) and can grow by nodes started with cluster_join."""

    def __init__(self, broker_factory, tmp_path, n=3):
        pw = tmp_path / "passwd"
        r = subprocess.run([LEDGERMQ, "passwd", "--file", str(pw), USER],
                           input=(PASSWORD + "\n").encode(), capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        self.factory, self.pwfile = broker_factory, str(pw)
        self.raft = [free_port() for _ in range(n)]
        self.nodes = [self.make(i + 1, self.raft) for i in range(n)]
        for b in self.nodes:
            b.start()

    def make(self, node_id, raft, join=False):
        extra = ["cluster_node %d 127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(raft)]
        extra += ["cluster_self %d" % node_id, "password_file %s" % self.pwfile]
        if join:
            extra.append("cluster_join true")
        return self.factory(config={"ledger_topic": TOPICS, "ledger_batch_ms": 5,
                                    "cluster_election_ms": 500, "cluster_heartbeat_ms": 50,
                                    "sys_interval": 1},
                            start=False, extra_lines=extra)

    def leader(self, timeout=15.0, exclude=()):
        """Index of the node whose `cluster status` says leader (probing
        with publishes would not do: a follower that forwards acks too)."""
        found = []

        def look():
            for i, b in enumerate(self.nodes):
                if i not in exclude and b.running() and status(b)["role"] == "leader":
                    found.append(i)
                    return True
            return False

        assert wait_for(look, timeout, 0.3), "no leader within %.0f s" % timeout
        return found[0]

    def join(self):
        """Starts one more node (id n+1, fresh data dir) with cluster_join."""
        self.raft.append(free_port())
        b = self.make(len(self.raft), self.raft, join=True)
        self.nodes.append(b)
        b.start()
        return len(self.nodes) - 1


def cli(node, *args, timeout_ms=10000, user=True):
    cmd = [LEDGERMQ, "cluster"] + [str(a) for a in args] + [
        "--broker", "127.0.0.1:%d" % node.port, "--timeout", str(timeout_ms)]
    if user:
        cmd += ["--username", USER, "--password", PASSWORD]
    r = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def status(node):
    rc, out, err = cli(node, "status", user=False, timeout_ms=5000)
    assert rc == 0, err
    return dict(line.split(": ", 1) for line in out.splitlines())


def wait_status(node, check, timeout=15):
    seen = []

    def ok():
        seen[:] = [status(node)]
        return check(seen[0])

    assert wait_for(ok, timeout, 0.5), seen
    return seen[0]


def test_add_transfer_remove(broker_factory, tmp_path):
    cl = AdminCluster(broker_factory, tmp_path)
    lead = cl.leader()
    for k in range(5):
        assert cl.probe(lead, "before-%d" % k)[0] == 0

    # add: node 4 joins with an empty data dir, catches up, becomes a voter
    new = cl.join()
    rc, out, err = cli(cl.nodes[lead], "add", 4, "127.0.0.1:%d" % cl.raft[new])
    assert rc == 0, err
    assert "member 4: 127.0.0.1:%d voter" % cl.raft[new] in out, out
    assert cl.probe(lead, "after-add")[0] == 0
    size, root = cl.converged()
    assert size == 6  # 5 before, 1 after the add
    audit(cl.nodes[new].data_dir)
    assert records(cl.nodes[new].data_dir, size) == records(cl.nodes[lead].data_dir, size)
    st = wait_status(cl.nodes[new], lambda s: s.get("member 4") ==
                     "127.0.0.1:%d voter" % cl.raft[new] and s["leader"] == str(lead + 1))
    assert st["role"] == "follower" and st["node"] == "4"
    assert sum(1 for k in st if k.startswith("member ")) == 4

    # transfer to the new node: it leads, acks, the others follow it
    rc, out, err = cli(cl.nodes[lead], "transfer", 4)
    assert rc == 0, err
    assert "leader: 4" in out, out
    wait_status(cl.nodes[new], lambda s: s["role"] == "leader")
    assert cl.probe(new, "after-transfer")[0] == 0
    old = lead

    # remove one of the first followers; the three left keep committing
    gone = next(i for i in range(3) if i != old)
    rc, out, err = cli(cl.nodes[new], "remove", gone + 1)
    assert rc == 0, err
    assert "member %d:" % (gone + 1) not in out and out.count("member ") == 3, out
    assert cl.nodes[gone].stop() == 0
    for k in range(3):
        assert cl.probe(new, "after-remove-%d" % k)[0] == 0
    by_id = {i + 1: b for i, b in enumerate(cl.nodes)}
    cl.nodes = [b for i, b in enumerate(cl.nodes) if i != gone]
    size2, _ = cl.converged()
    assert size2 == size + 4
    wait_status(cl.nodes[-1], lambda s: "member %d" % (gone + 1) not in s and
                sum(1 for k in s if k.startswith("member ")) == 3)

    # transfer without an id: to whichever voter is most up to date
    rc, out, err = cli(cl.nodes[-1], "transfer")
    assert rc == 0, err
    to = int(re.search(r"leader: (\d+)", out).group(1))
    assert to in (1, 2, 3) and to != gone + 1, out
    wait_status(by_id[to], lambda s: s["role"] == "leader")


def connect_user(port, cid):
    """An MQTT 5 client logged in as the operator (raw CONNECT)."""
    c = V.Client5(port)
    body = (R.mstr("MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 60) + b"\x00" +
            R.mstr(cid) + R.mstr(USER) + R.mstr(PASSWORD))
    c.send(R.packet(R.CONNECT, 0, body))
    assert c.expect5(R.CONNACK).reason == 0
    return c


def request(c, payload, pid=5):
    """A request on $ledger/admin/cluster: (PUBACK, reply JSON or None)."""
    assert c.subscribe5([("replies/admin", 1)], pid=pid + 100) == [1]
    c.send(V.publish("$ledger/admin/cluster", payload, qos=1, pid=pid,
                     pprops=V.props((V.RESPONSE_TOPIC, "replies/admin"),
                                    (V.CORRELATION_DATA, b"k"))))
    ack, reply = None, None
    for _ in range(4):
        p = c.recv5(timeout=10)
        assert p is not None, "no answer"
        if p.type == R.PUBACK and p.pid == pid:
            ack = p
            if p.reason >= 0x80:
                return ack, None
        elif p.type == R.PUBLISH:
            assert p.topic == "replies/admin" and V.pget(p.props, V.CORRELATION_DATA) == b"k"
            reply = json.loads(p.payload)
            if p.qos:
                c.send(V.ack(R.PUBACK, p.pid))
        if ack is not None and reply is not None:
            return ack, reply
    raise AssertionError("incomplete answer")


def test_refusals(broker_factory, tmp_path):
    cl = AdminCluster(broker_factory, tmp_path)
    lead = cl.leader()
    fol = (lead + 1) % 3
    leader_addr = "127.0.0.1:%d" % cl.raft[lead]

    # not an operator (anonymous session): 0x87, whatever the request
    c = V.Client5(cl.nodes[lead].port)
    try:
        assert c.connect5("anon-admin").reason == 0
        ack, _ = request(c, b'{"op": "transfer"}')
        assert ack.reason == 0x87
    finally:
        c.close()
    rc, _, err = cli(cl.nodes[lead], "remove", 2, user=False)
    assert rc == 2 and "PUBACK 0x87" in err, err

    # a follower: 0x97 naming the leader (MQTT and CLI)
    c = connect_user(cl.nodes[fol].port, "op-follower")
    try:
        ack, _ = request(c, b'{"op": "remove", "id": 2}')
        assert ack.reason == 0x97
        assert V.pget(ack.props, V.REASON_STRING) == \
            "not the leader: node %d at %s" % (lead + 1, leader_addr)
    finally:
        c.close()
    rc, _, err = cli(cl.nodes[fol], "transfer")
    assert rc == 2 and "PUBACK 0x97" in err and \
        "not the leader: node %d at %s" % (lead + 1, leader_addr) in err, err

    # malformed requests: a JSON error, nothing changed
    c = connect_user(cl.nodes[lead].port, "op-leader")
    try:
        for body, why in [(b'{"op": "frob", "id": 2}', "op: expected"),
                          (b'{"op": "add", "id": 5}', "add: needs \"address\""),
                          (b'{"op": "remove", "id": 0}', "id: expected a node id"),
                          (b'{"op": "remove", "id": 2, "id": 3}', "given twice"),
                          (b'[1]', "not a JSON object")]:
            ack, reply = request(c, body)
            assert ack.reason == 0 and reply["error"] == "bad_request", (body, reply)
            assert why in reply["reason"], (body, reply)
    finally:
        c.close()

    # unknown and duplicate ids, duplicate address: exit 1 with the reason
    rc, _, err = cli(cl.nodes[lead], "remove", 9)
    assert rc == 1 and "node 9 is not a member (unknown_id)" in err, err
    rc, _, err = cli(cl.nodes[lead], "transfer", 9)
    assert rc == 1 and "node 9 is not a member" in err, err
    rc, _, err = cli(cl.nodes[lead], "add", 2, "127.0.0.1:1")
    assert rc == 1 and re.search(r"node 2 is a member already \(127\.0\.0\.1:\d+, voter\) "
                                 r"\(duplicate_id\)", err), err
    rc, _, err = cli(cl.nodes[lead], "add", 7, "127.0.0.1:%d" % cl.raft[fol])
    assert rc == 1 and "127.0.0.1:%d is the address of node %d (duplicate_address)" % (
        cl.raft[fol], fol + 1) in err, err
    # usage errors never reach the broker
    rc, _, err = cli(cl.nodes[lead], "add", "x", "127.0.0.1:1")
    assert rc == 2 and "'x' is not a node id" in err, err
    rc, _, err = cli(cl.nodes[lead], "add", 5, "nowhere")
    assert rc == 2 and "'nowhere' is not HOST:PORT" in err, err
    # the cluster is unchanged and still commits
    assert cl.probe(lead, "still")[0] == 0
    st = wait_status(cl.nodes[lead], lambda s: s["role"] == "leader")
    assert sorted(k for k in st if k.startswith("member ")) == ["member 1", "member 2",
                                                                 "member 3"]


def test_add_of_a_node_not_running(broker_factory, tmp_path):
    """Nobody listens at the new address: the CLI's own bound gives a clear
    timeout; the leader keeps the node as a spare (no vote, the majority is
    unchanged) once its catch-up fails, says so to a request that waits
    long enough, and the spare can be removed."""
    cl = AdminCluster(broker_factory, tmp_path)
    lead = cl.leader()
    dead = "127.0.0.1:%d" % free_port()
    rc, _, err = cli(cl.nodes[lead], "add", 4, dead, timeout_ms=3000)
    assert rc == 2 and "no reply to $ledger/admin/cluster within 3000 ms" in err, err
    st = wait_status(cl.nodes[lead], lambda s: s.get("member 4") == dead + " spare", 20)
    assert st["member 1"].endswith(" voter") and st["role"] == "leader"
    assert cl.probe(lead, "with-spare")[0] == 0
    rc, _, err = cli(cl.nodes[lead], "add", 4, dead)
    assert rc == 1 and "node 4 is a member already (%s, spare) (duplicate_id)" % dead in err, err
    # (the promotion may still be trying: a change at a time, "busy")
    res = []
    assert wait_for(lambda: res.append(cli(cl.nodes[lead], "remove", 4)) or
                    "(busy)" not in res[-1][2], 20, 0.5), res[-1]
    rc, out, err = res[-1]
    assert rc == 0 and "member 4:" not in out, (out, err)
    # a second one, waited for: the reply names the failed catch-up
    rc, _, err = cli(cl.nodes[lead], "add", 5, dead, timeout_ms=30000)
    assert rc == 1 and "node 5 was added as a spare but did not catch up" in err and \
        "(catchup_failed)" in err, err
