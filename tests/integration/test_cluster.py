"""Clusters of ledgermqd processes (issue 7, docs/CLUSTER.md): bad
cluster lines stop the start with FILE:LINE; three daemons on loopback
order ledgered publishes through Raft (the leader acks, a follower refuses
with 0x97 naming the leader) and end with identical logs (size and root)
also after kill -9 of the leader under a stream of publishes and kill -9
and restart of a follower. The Raft layer itself is unit-tested in
tests/unit/test_raft_node.c. Every process is stopped at the end of each
test (broker_factory), every wait is bounded."""
import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import mqttraw as R
import v5raw as V
from conftest import BUILD_DIR, LEDGERMQD, free_port, ledgermq_only, wait_for

pytestmark = ledgermq_only("tests ledgermqd's cluster configuration")


def can_connect(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def run_daemon(tmp_path, text):
    """Starts ledgermqd on TEXT (plus a listener); returns (rc, stderr, conf, port)."""
    port = free_port()
    conf = tmp_path / "cluster.conf"
    conf.write_text(text + "listener %d 127.0.0.1\n" % port)
    proc = subprocess.Popen([LEDGERMQD, "-c", str(conf), "-d", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=str(tmp_path))
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=10)
        pytest.fail("ledgermqd did not exit")
    return proc.returncode, err.decode("utf-8", "replace"), conf, port


@pytest.mark.parametrize("text,lineno,reason", [
    ("cluster_node 1 ::1:7001\n", 2, r"cluster_node address '::1:7001' is not HOST:PORT"),
    ("cluster_node 1 127.0.0.1:7001\ncluster_node 1 127.0.0.1:7002\n", 3,
     r"id or address already used \(line 2\)"),
    ("cluster_node 1 127.0.0.1:7001\n", 2, r"need cluster_self ID naming one of them"),
    ("cluster_self 2\ncluster_node 1 127.0.0.1:7001\ncluster_node 2 127.0.0.1:65535\n", 4,
     r"cluster_node 127\.0\.0\.1:65535: its port 65535 \+ cluster_channel_port_offset 1 "
     r"\(its cluster channel\) is above 65535"),
], ids=["ipv6-address", "duplicate-id", "no-self", "channel-port"])
def test_bad_cluster_lines(tmp_path, text, lineno, reason):
    rc, err, conf, port = run_daemon(tmp_path, "# line 1\n" + text)
    assert rc == 1, err
    m = re.search(r"ledgermqd: (\S+):(\d+): (.+)", err)
    assert m, err
    assert m.group(1) == str(conf) and int(m.group(2)) == lineno, err
    assert re.search(reason, m.group(3)), m.group(3)
    assert not can_connect(port)


# ---------------------------------------------------------------------------
# three-node clusters

LEDGERMQ = os.path.join(BUILD_DIR, "ledgermq")
TOPICS = "att/# attested"


def log_info(data_dir):
    """(size, root) of the ledger in DATA_DIR (`ledgermq log info`)."""
    r = subprocess.run([LEDGERMQ, "-d", data_dir, "log", "info"], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    return (int(re.search(r"^size: (\d+)$", out, re.M).group(1)),
            re.search(r"^root: (\S+)$", out, re.M).group(1))


def audit(data_dir):
    r = subprocess.run([LEDGERMQ, "-d", data_dir, "audit"], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr


def records(data_dir, size):
    """The payloads of records 0..SIZE-1 as the CLI decodes them."""
    out = []
    for i in range(size):
        r = subprocess.run([LEDGERMQ, "-d", data_dir, "log", "get", str(i)],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        out.append(r.stdout.decode())
    return out


def free_port_pair(taken=()):
    """A free port P whose P+1 is free too (a node's Raft port and its
    cluster channel port at cluster_channel_port_offset 1), neither of
    them in TAKEN."""
    for _ in range(100):
        p = free_port()
        if p in taken or p + 1 in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p + 1))
            return p
        except OSError:
            continue
        finally:
            s.close()
    raise AssertionError("no two free ports in a row")


def cluster_ports(n, pairs):
    """N distinct free Raft ports; PAIRS: free_port_pair's, no port of one
    node's pair in another's (a port picked twice made a node refuse
    its config: 'id or address already used')."""
    taken, out = set(), []
    while len(out) < n:
        p = free_port_pair(taken) if pairs else free_port()
        if p in taken:
            continue
        out.append(p)
        taken.update((p, p + 1) if pairs else (p,))
    return out


class Cluster:
    def __init__(self, broker_factory, n=3, tls=None, forward=False, config=None, more_lines=()):
        """TLS: a directory holding ca.crt and node<ID>.crt/.key. FORWARD:
        followers forward ledgered publishes to the leader (cluster_forward;
        off by default here, so that a follower's refusal tells the leader
        apart). CONFIG, MORE_LINES: more keys and config lines for every node."""
        self.raft = cluster_ports(n, forward)
        lines = ["cluster_node %d 127.0.0.1:%d" % (i + 1, p) for i, p in enumerate(self.raft)]
        self.nodes = []
        for i in range(n):
            extra = lines + ["cluster_self %d" % (i + 1)]
            if tls:
                extra += tls_lines(tls, i)
            cfg = {"ledger_topic": TOPICS, "ledger_batch_ms": 5, "cluster_election_ms": 500,
                   "cluster_heartbeat_ms": 50, "sys_interval": 1,
                   "cluster_forward": "true" if forward else "false"}
            cfg.update(config or {})
            b = broker_factory(config=cfg, start=False, extra_lines=extra + list(more_lines))
            self.nodes.append(b)
        for b in self.nodes:
            b.start()

    def probe(self, i, tag):
        """One ledgered QoS 1 publish on node I: (reason, reason string)."""
        c = V.Client5(self.nodes[i].port)
        try:
            assert c.connect5("probe-%s" % tag).reason == 0
            publish(c, "att/probe", tag.encode(), pid=1)
            p = c.expect5(R.PUBACK, 10)
            return p.reason, V.pget(p.props, V.REASON_STRING)
        finally:
            c.close()

    def leader(self, timeout=15.0, exclude=()):
        """Index of the node whose ledgered publish is acked (probing)."""
        found = []

        def look():
            for i, b in enumerate(self.nodes):
                if i in exclude or not b.running():
                    continue
                reason, _ = self.probe(i, "leader-%d-%f" % (i, time.monotonic()))
                if reason == 0:
                    found.append(i)
                    return True
            time.sleep(0.2)
            return False

        assert wait_for(look, timeout), "no leader acked within %.0f s" % timeout
        return found[0]

    def stop_all(self):
        for b in self.nodes:
            if b.running():
                assert b.stop() == 0, b.log()[-3000:]

    def converged(self, timeout=20.0):
        """Waits until every node's ledger has the same size and root
        (read-only opens of running nodes), returns (size, root)."""
        last = []

        def same():
            infos = [log_info(b.data_dir) for b in self.nodes]
            last[:] = infos
            return len(set(infos)) == 1

        assert wait_for(same, timeout, 0.3), last
        return last[0]

    def settled(self, timeout=30.0):
        """converged() after one acked ledgered publish through the leader:
        the leader answers its batches in order, so what a stopped stream
        left in its queues is committed (or refused) by then, and no batch
        lands while stop_all() stops the nodes one after the other (which
        would leave the node stopped first short of the others)."""
        self.leader(timeout)
        return self.converged(timeout)


def publish(c, topic, payload, pid):
    body = R.mstr(topic) + pid.to_bytes(2, "big") + b"\x00" + payload
    c.send(R.packet(R.PUBLISH, 2, body))


def test_three_nodes_replicate(broker_factory):
    """The leader acks ledgered publishes once a majority committed them; a
    follower refuses with 0x97 naming the leader; plain MQTT works on every
    node; all three logs end with the same records, size and root."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    fol = [i for i in range(3) if i != lead]
    reason, why = cl.probe(fol[0], "on-follower")
    assert reason == 0x97
    assert why == "not the leader: node %d at 127.0.0.1:%d" % (lead + 1, cl.raft[lead])
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("pub").reason == 0
    for k in range(1, 51):
        publish(c, "att/m", b"m%d" % k, pid=k)
    acks = [c.expect5(R.PUBACK, 10) for _ in range(50)]
    assert [(a.pid, a.reason) for a in acks] == [(k, 0) for k in range(1, 51)]
    c.close()
    # plain topics on a follower
    s = V.Client5(cl.nodes[fol[1]].port)
    assert s.connect5("s").reason == 0
    s.subscribe5([("plain/#", 1)])
    p = V.Client5(cl.nodes[fol[1]].port)
    assert p.connect5("p").reason == 0
    publish(p, "plain/x", b"plain", pid=7)
    assert p.expect5(R.PUBACK).reason == 0
    assert s.expect5(R.PUBLISH).payload == b"plain"
    s.close()
    p.close()
    size, root = cl.converged()
    cl.stop_all()
    infos = [log_info(b.data_dir) for b in cl.nodes]
    assert infos == [(size, root)] * 3
    recs = [records(b.data_dir, size) for b in cl.nodes]
    assert recs[0] == recs[1] == recs[2]
    for b in cl.nodes:
        audit(b.data_dir)


def stream(cl, acked, stop, errors, ack_times):
    """Publishes att/s messages to whichever node acks, recording the
    payloads acked with 0 (the leader may change under it)."""
    k = 0
    target = 0
    while not stop.is_set():
        b = cl.nodes[target]
        if not b.running():
            target = (target + 1) % len(cl.nodes)
            continue
        try:
            c = V.Client5(b.port)
            if c.connect5("stream-%d" % k).reason != 0:
                raise OSError("connect refused")
            while not stop.is_set():
                k += 1
                payload = b"s%d" % k
                publish(c, "att/s", payload, pid=(k % 60000) + 1)
                a = c.expect5(R.PUBACK, 10)
                if a.reason == 0:
                    acked.append(payload)
                    ack_times.append(time.monotonic())
                else:
                    raise OSError("refused 0x%02x" % a.reason)
        except Exception as e:  # noqa: BLE001 (connection closed, refused, timeout)
            errors.append(str(e))
            target = (target + 1) % len(cl.nodes)
            time.sleep(0.05)
        finally:
            try:
                c.close()
            except Exception:
                pass


def final_payloads(data_dir, size):
    """The payloads of the message records in DATA_DIR's first SIZE records."""
    out = set()
    for r in records(data_dir, size):
        j = json.loads(r)
        if "payload" in j:
            out.add(j["payload"].encode())
        elif "payload_base64" in j:
            out.add(base64.b64decode(j["payload_base64"]))
    return out


def test_leader_kill9_under_load(broker_factory):
    """kill -9 of the leader while publishes stream: another node becomes
    leader and acks, the old leader comes back and catches up, and every
    acked message is in the final log of every node, roots identical."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    acked, errors, stop, ack_times = [], [], threading.Event(), []
    t = threading.Thread(target=stream, args=(cl, acked, stop, errors, ack_times), daemon=True)
    t.start()
    try:
        assert wait_for(lambda: len(acked) >= 30, 20)
        cl.nodes[lead].kill()
        killed_at = time.monotonic()
        n0 = len(acked)
        new = cl.leader(timeout=20, exclude=(lead,))
        assert new != lead
        assert wait_for(lambda: len(acked) >= n0 + 30, 30), errors[-5:]
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()
    after = [x for x in ack_times if x > killed_at]
    # a figure, not an assertion (benchmarks are separate): pytest -s shows it
    print("failover: %.3f s from kill -9 of the leader to the next PUBACK" %
          ((after[0] - killed_at) if after else float("nan")))
    cl.nodes[lead].start()
    size, root = cl.settled(30)
    cl.stop_all()
    assert [log_info(b.data_dir) for b in cl.nodes] == [(size, root)] * 3
    for b in cl.nodes:
        audit(b.data_dir)
        got = final_payloads(b.data_dir, size)
        missing = [p for p in acked if p not in got]
        assert missing == [], missing[:10]


def test_follower_kill9_restart_catches_up(broker_factory):
    """kill -9 of a follower, publishes go on, the follower restarts on its
    data dir, catches up, and its audit passes with the leader's root."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    fol = [i for i in range(3) if i != lead][0]
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("pub").reason == 0
    for k in range(1, 21):
        publish(c, "att/a", b"a%d" % k, pid=k)
        assert c.expect5(R.PUBACK, 10).reason == 0
    cl.nodes[fol].kill()
    for k in range(21, 61):
        publish(c, "att/a", b"a%d" % k, pid=k)
        assert c.expect5(R.PUBACK, 10).reason == 0
    c.close()
    cl.nodes[fol].start()
    size, root = cl.converged(30)
    cl.stop_all()
    assert [log_info(b.data_dir) for b in cl.nodes] == [(size, root)] * 3
    audit(cl.nodes[fol].data_dir)
    got = final_payloads(cl.nodes[fol].data_dir, size)
    assert all(b"a%d" % k in got for k in range(1, 61))


def cluster_pki(d, n=3):
    """Makes directory D with a cluster CA (ca.crt) and node<ID>.crt/.key
    (CN ledgermq-node-<ID>, keys 0600) for IDs 1..N: Cluster's TLS."""
    import tlscerts as T
    os.makedirs(d)
    T._ca(d, "ca", "cluster CA")
    for i in range(1, n + 1):
        T._leaf(d, "node%d" % i, "ca", "/O=ledgermq test/CN=ledgermq-node-%d" % i,
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
        os.chmod(os.path.join(d, "node%d.key" % i), 0o600)
    return d


def tls_lines(d, i):
    """The cluster_tls_* lines of node I (0-based) for cluster_pki's D."""
    return ["cluster_tls_cert %s/node%d.crt" % (d, i + 1),
            "cluster_tls_key %s/node%d.key" % (d, i + 1),
            "cluster_tls_ca %s/ca.crt" % d]


def test_three_nodes_over_tls(broker_factory, tmp_path):
    """With the cluster_tls_* keys the daemons talk mutual TLS (each node's
    certificate of the cluster CA names ledgermq-node-<ID>) and replicate
    as over plain TCP."""
    cl = Cluster(broker_factory, tls=cluster_pki(str(tmp_path / "pki")))
    for i, b in enumerate(cl.nodes):
        assert b.wait_log(r"raft: node %d listening on 127\.0\.0\.1:%d \(TLS\)" %
                          (i + 1, cl.raft[i]), timeout=5), b.log()
    lead = cl.leader()
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("pub").reason == 0
    for k in range(1, 21):
        publish(c, "att/t", b"t%d" % k, pid=k)
    assert [(a.pid, a.reason) for a in (c.expect5(R.PUBACK, 10) for _ in range(20))] == [
        (k, 0) for k in range(1, 21)]
    c.close()
    size, root = cl.converged()
    cl.stop_all()
    assert [log_info(b.data_dir) for b in cl.nodes] == [(size, root)] * 3
    got = final_payloads(cl.nodes[0].data_dir, size)
    assert all(b"t%d" % k in got for k in range(1, 21))


def cluster_status(port):
    r = subprocess.run([LEDGERMQ, "cluster", "status", "--broker", "127.0.0.1:%d" % port,
                        "--timeout", "5000"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return dict(line.split(": ", 1) for line in r.stdout.decode().splitlines())


def test_cluster_status(broker_factory):
    """`ledgermq cluster status --broker` on each node: its id and role, and
    all agree on the term, the leader and its Raft address."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    seen = {}

    def agreed():
        for i, b in enumerate(cl.nodes):
            seen[i] = cluster_status(b.port)
        return all(seen[i]["role"] == ("leader" if i == lead else "follower") and
                   seen[i]["leader"] == str(lead + 1) and
                   int(seen[i]["applied_index"]) >= 1 for i in seen)  # the probe's batch

    assert wait_for(agreed, 15, 0.5), seen
    for i in range(3):
        assert seen[i]["node"] == str(i + 1)
        assert seen[i]["leader_address"] == "127.0.0.1:%d" % cl.raft[lead]
        assert seen[i]["term"] == seen[lead]["term"] and int(seen[i]["term"]) >= 1


def test_batch_appended_before_meta_write_not_appended_again(broker_factory):
    """A node killed after a batch's append and before raft/ledger-applied
    recorded it (simulated: the file of before that batch put back while
    the node is stopped) recognises the batch by the ledger size on the
    replay and does not append it twice."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    fol = [i for i in range(3) if i != lead][0]
    c = V.Client5(cl.nodes[lead].port)
    assert c.connect5("pub").reason == 0
    publish(c, "att/w", b"before", pid=1)
    assert c.expect5(R.PUBACK, 10).reason == 0
    cl.converged()
    meta = os.path.join(cl.nodes[fol].data_dir, "raft", "ledger-applied")
    assert cl.nodes[fol].stop() == 0
    with open(meta) as f:
        saved = f.read()
    cl.nodes[fol].start()
    publish(c, "att/w", b"window", pid=2)
    assert c.expect5(R.PUBACK, 10).reason == 0
    size, root = cl.converged()
    assert cl.nodes[fol].stop() == 0
    with open(meta, "w") as f:
        f.write(saved)
    cl.nodes[fol].start()
    assert cl.nodes[fol].wait_log(r"cluster: entry \d+ was in the ledger already", timeout=10), \
        cl.nodes[fol].log()
    publish(c, "att/w", b"after", pid=3)
    assert c.expect5(R.PUBACK, 10).reason == 0
    c.close()
    size2, root2 = cl.converged()
    assert size2 == size + 1
    cl.stop_all()
    audit(cl.nodes[fol].data_dir)
    assert final_payloads(cl.nodes[fol].data_dir, size2) >= {b"before", b"window", b"after"}


def test_follower_refusals_qos2_and_311(broker_factory):
    """On a follower an MQTT 5 QoS 2 ledgered publish gets PUBREC 0x97 with
    the leader named, and an MQTT 3.1.1 publisher (no negative ack in
    3.1.1) is disconnected without a PUBACK; nothing is recorded for
    either."""
    cl = Cluster(broker_factory)
    lead = cl.leader()
    fol = [i for i in range(3) if i != lead][0]
    c = V.Client5(cl.nodes[fol].port)
    assert c.connect5("q2").reason == 0
    c.send(R.packet(R.PUBLISH, 4, R.mstr("att/q2") + (9).to_bytes(2, "big") + b"\x00" + b"x"))
    p = c.expect5(R.PUBREC, 10)
    assert (p.pid, p.reason) == (9, 0x97)
    assert V.pget(p.props, V.REASON_STRING) == "not the leader: node %d at 127.0.0.1:%d" % (
        lead + 1, cl.raft[lead])
    c.close()
    o = R.RawClient(cl.nodes[fol].port)
    assert o.connect("old").body[1] == 0
    o.send(R.publish_packet("att/311", b"y", qos=1, pid=5))
    assert o.wait_closed(10)
    assert all(x.type != R.PUBACK for x in o.seen), o.seen
    o.close()
    size, root = cl.converged()
    cl.stop_all()
    got = final_payloads(cl.nodes[lead].data_dir, size)
    assert b"x" not in got and b"y" not in got
