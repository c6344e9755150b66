"""Network partitions of a three-node cluster (issue 7 item 7,
docs/CLUSTER.md). Each ledgermqd runs in a network namespace the test
creates (`lmqt-<random>-N`) with one veth ("eth0", 10.213.0.N/24) whose
other end is a port of a bridge in a fourth namespace the test creates
too (`lmqt-<random>-hub`); the root namespace's network is never touched.
A node is cut off by setting its bridge port down (nothing in, nothing
out) and healed by setting it up. For a partial cut the nodes are linked
pair by pair instead (a veth per pair, each node's address on its
loopback, a route per peer) and one pair's link is set down. Each
daemon's MQTT listener is 127.0.0.1 inside its own namespace: the test's
clients open their sockets from a thread that entered that namespace
(setns), so a client still reaches its node while the node is cut off
from the others. Followers forward ledgered publishes to the leader
(cluster_forward, the default), with a 2 s forward timeout.

Cases: the leader cut off under a stream of ledgered QoS 1 publishes to
it (the majority elects another leader and goes on, the old leader acks
nothing sent after the cut and refuses with 0x97, never leads again
while cut off, rejoins as a follower; every acked message is in every
node's final log exactly once, the logs are identical); a follower cut
off (the others go on, it catches up); a cut-off node never becomes
leader, does not raise its term, and refuses ledgered QoS 1 and QoS 2
publishes with 0x97 "no leader known"; a follower forwarding a stream
while the leader is cut off (its batches reach the new leader, applied
at most once); a partial cut between the leader and one follower (no
leader change, no term change); a follower cut off for 15 s (make soak:
30 s too), over plain TCP and over TLS, follows the leader again within
5 s of the heal (stuck connections are closed, libraft reconnects).

Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2 (make deps);
skipped with the reason otherwise. Every namespace, link and process is
removed at the end of each test, whatever happened; every wait is
bounded."""
import collections
import ctypes
import os
import re
import secrets
import shutil
import subprocess
import threading
import time

import pytest

import mqttraw as R
import v5raw as V
from conftest import ledgermq_only, wait_for
from test_cluster import (LEDGERMQ, TOPICS, Cluster, audit, cluster_pki, log_info, publish,
                          tls_lines)

# Refusals a client may get from a node that has no quorum: directly, or
# after forwarding found no leader within cluster_forward_timeout_ms.
NO_LEADER = re.compile(r"not the leader: no leader known|"
                       r"forwarding to the leader failed within \d+ ms: no leader known")
from test_ledgered import segment_records

pytestmark = ledgermq_only("tests ledgermqd's cluster in network namespaces")
SOAK_ONLY = pytest.mark.skipif(not os.environ.get("LMQ_SOAK"), reason="a 30 s cut: make soak (LMQ_SOAK=1)")

RAFT_PORT = 7000  # each node has its own namespace: nothing else binds there
# The bound for a healed node to be back, generous for a loaded machine:
# a stuck Raft connection is closed after four election timeouts and
# libraft reconnects (test_cut_follower_rejoins_soon bounds it at 5 s).
HEAL_S = 40.0
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args):
    r = subprocess.run(["ip"] + list(args), capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise OSError("ip %s: %s" % (" ".join(args), r.stderr.decode().strip()))
    return r.stdout.decode()


def enter_netns(name):
    """Moves the calling thread (only it) into the network namespace NAME;
    sockets it opens from then on belong to that namespace."""
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (name, os.strerror(e)))
    finally:
        os.close(fd)


def in_netns(name, fn, timeout=30.0):
    """FN() run on a fresh thread inside namespace NAME; returns its value
    (sockets it made stay in NAME and may be used from any thread)."""
    box = {}

    def run():
        try:
            enter_netns(name)
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 (re-raised below)
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "no answer within %.0f s in %s" % (timeout, name)
    if "e" in box:
        raise box["e"]
    return box["v"]


class Net:
    """One namespace per node. Bridge (default): a hub namespace holds a
    bridge, node I has "eth0" 10.213.0.(I+1)/24 whose other end is the
    bridge port vI+1 (isolate/heal set that port down/up). MESH: no hub,
    node I has 10.213.1.(I+1)/32 on its loopback and one veth "pJ+1" to
    each other node J with a route to J's address over it, so the link of
    one pair can be cut alone (cut/join)."""

    def __init__(self, n, mesh=False):
        tag = secrets.token_hex(3)
        self.mesh = mesh
        self.hub = None if mesh else "lmqt-%s-hub" % tag
        self.ns = ["lmqt-%s-%d" % (tag, i + 1) for i in range(n)]
        self.addr = ["10.213.%d.%d" % (1 if mesh else 0, i + 1) for i in range(n)]
        self.made = []

    def create(self):
        for name in ([] if self.mesh else [self.hub]) + self.ns:
            _ip("netns", "add", name)
            self.made.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        if self.mesh:
            self._create_mesh()
            return
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i, name in enumerate(self.ns):
            port = "v%d" % (i + 1)
            _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                "netns", name)
            _ip("-n", self.hub, "link", "set", port, "master", "br0")
            _ip("-n", self.hub, "link", "set", port, "up")
            _ip("-n", name, "addr", "add", self.addr[i] + "/24", "dev", "eth0")
            _ip("-n", name, "link", "set", "eth0", "up")

    def _create_mesh(self):
        for i, name in enumerate(self.ns):
            _ip("-n", name, "addr", "add", self.addr[i] + "/32", "dev", "lo")
        for i in range(len(self.ns)):
            for j in range(i + 1, len(self.ns)):
                _ip("-n", self.ns[i], "link", "add", "p%d" % (j + 1), "type", "veth", "peer",
                    "name", "p%d" % (i + 1), "netns", self.ns[j])
                for a, b in ((i, j), (j, i)):
                    _ip("-n", self.ns[a], "link", "set", "p%d" % (b + 1), "up")
                    # a device route: the peer answers ARP for its loopback address
                    _ip("-n", self.ns[a], "route", "add", self.addr[b] + "/32", "dev",
                        "p%d" % (b + 1), "src", self.addr[a])

    def isolate(self, i):
        """Bridge: node I's port down, nothing in or out."""
        self._port(i, "down")

    def heal(self, i):
        self._port(i, "up")

    def _port(self, i, state):
        assert not self.mesh, "a mesh cuts pairs: cut/join"
        _ip("-n", self.hub, "link", "set", "v%d" % (i + 1), state)

    def cut(self, i, j):
        """Mesh: nothing passes between nodes I and J any more."""
        _ip("-n", self.ns[i], "link", "set", "p%d" % (j + 1), "down")

    def join(self, i, j):
        _ip("-n", self.ns[i], "link", "set", "p%d" % (j + 1), "up")
        # the routes over a link that went down are gone: put them back
        for a, b in ((i, j), (j, i)):
            _ip("-n", self.ns[a], "route", "replace", self.addr[b] + "/32", "dev",
                "p%d" % (b + 1), "src", self.addr[a])

    def destroy(self):
        """Kills what still runs in our namespaces (only our daemons and
        CLI runs can be there), then deletes them with their links."""
        for name in reversed(self.made):
            try:
                for pid in _ip("netns", "pids", name).split():
                    try:
                        os.kill(int(pid), 9)
                    except OSError:
                        pass
            except (OSError, subprocess.TimeoutExpired):
                pass
            try:
                _ip("netns", "del", name)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.made = []


def _namespaces(mesh):
    if shutil.which("ip") is None:
        pytest.skip("iproute2's ip is missing (make deps installs it)")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
    n = Net(3, mesh)
    try:
        n.create()
    except OSError as e:
        n.destroy()
        if "Operation not permitted" in str(e) or "Permission denied" in str(e):
            pytest.skip("cannot create network namespaces here: %s" % e)
        raise
    try:
        yield n
    finally:
        n.destroy()


@pytest.fixture
def net():
    """Three node namespaces on a bridge (Net)."""
    yield from _namespaces(False)


@pytest.fixture
def mesh():
    """Three node namespaces linked pair by pair (Net with MESH)."""
    yield from _namespaces(True)


class NsCluster(Cluster):
    """test_cluster's Cluster with node I in namespace net.ns[I], Raft on
    net.addr[I]:7000 (the cluster channel on 7001), MQTT on 127.0.0.1
    inside that namespace."""

    def __init__(self, net, broker_factory, tls=None):
        """TLS: cluster_pki's directory, or None for plain TCP."""
        self.net = net
        self.raft = [RAFT_PORT] * len(net.ns)
        lines = ["cluster_node %d %s:%d" % (i + 1, a, RAFT_PORT) for i, a in enumerate(net.addr)]
        self.nodes = []
        for i, ns in enumerate(net.ns):
            # followers forward to the leader (the default), the timeout
            # short: a node without a leader refuses after it
            b = broker_factory(config={"ledger_topic": TOPICS, "ledger_batch_ms": 5,
                                       "cluster_election_ms": 500,
                                       "cluster_heartbeat_ms": 50, "sys_interval": 1,
                                       "cluster_forward": "true",
                                       "cluster_forward_timeout_ms": 2000},
                               start=False, extra_lines=lines + ["cluster_self %d" % (i + 1)] +
                               (tls_lines(tls, i) if tls else []))
            b.command = (lambda inner=b.command, ns=ns: ["ip", "netns", "exec", ns] + inner())
            self.nodes.append(b)
        for b in self.nodes:
            b.start()

    def client(self, i, client_id):
        """An MQTT 5 client connected to node I from inside its namespace."""
        c = in_netns(self.net.ns[i], lambda: V.Client5(self.nodes[i].port))
        assert c.connect5(client_id).reason == 0
        return c

    def probe(self, i, tag):
        c = self.client(i, "probe-%s" % tag)
        try:
            publish(c, "att/probe", tag.encode(), pid=1)
            p = c.expect5(R.PUBACK, 15)  # > cluster_forward_timeout_ms (a batch ahead too)
            return p.reason, V.pget(p.props, V.REASON_STRING)
        finally:
            c.close()

    def status(self, i):
        """`ledgermq cluster status` of node I, run inside its namespace."""
        r = subprocess.run(["ip", "netns", "exec", self.net.ns[i], LEDGERMQ, "cluster", "status",
                            "--broker", "127.0.0.1:%d" % self.nodes[i].port, "--timeout", "5000"],
                           capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        return dict(line.split(": ", 1) for line in r.stdout.decode().splitlines())

    def one_leader(self, among=None, timeout=20.0):
        """Waits until every node of AMONG (default: all) names the same
        leader, one of them, and that node says it leads and the others
        follow; returns its index. (With forwarding a follower acks too, so
        the leader is read from the nodes' status, not found by probing.)"""
        among = list(range(len(self.nodes))) if among is None else list(among)
        seen = {}

        def agreed():
            for i in among:
                seen[i] = self.status(i)
            ids = {seen[i]["leader"] for i in among}
            if len(ids) != 1:
                return False
            lead = int(ids.pop()) - 1
            return lead in among and all(
                seen[i]["role"] == ("leader" if i == lead else "follower") for i in among)

        assert wait_for(agreed, timeout, 0.3), seen
        return int(seen[among[0]]["leader"]) - 1

    def publish_acked(self, i, tag, n=20):
        """N ledgered QoS 1 publishes TAG1..TAGN to node I, each acked 0."""
        c = self.client(i, "pub-" + tag)
        try:
            for k in range(1, n + 1):
                publish(c, "att/m", b"%s%d" % (tag.encode(), k), pid=k)
            acks = [c.expect5(R.PUBACK, 15) for _ in range(n)]
            assert [(a.pid, a.reason) for a in acks] == [(k, 0) for k in range(1, n + 1)], [
                V.pget(a.props, V.REASON_STRING) for a in acks]
        finally:
            c.close()
        return [b"%s%d" % (tag.encode(), k) for k in range(1, n + 1)]

    def serves(self, i, tag, timeout=HEAL_S):
        """Waits until a ledgered publish to node I is acked 0 (refusals
        meanwhile must be 0x97: a node just healed has no leader yet);
        returns the acked payload."""
        got = []

        def try_once():
            tag_k = "%s-%d" % (tag, len(got))
            reason, why = self.probe(i, tag_k)
            assert reason in (0, 0x97), (reason, why)
            got.append(tag_k.encode())
            return reason == 0

        assert wait_for(try_once, timeout, 0.2), "node %d never acked" % (i + 1)
        return got[-1]

    def check_identical(self, acked):
        """After convergence: stops every node; same size and root, every
        record the same on all, audits pass, every payload in ACKED is in
        each log exactly once and no payload twice. Returns the size.
        First one acked publish to each node: a node answers its batches
        in order, so what a stopped stream left in its queues is then
        committed (or refused) and nothing more comes while the nodes are
        stopped one after the other."""
        acked = list(acked) + [self.serves(i, "flush-%d" % i) for i in range(len(self.nodes))]
        size, root = self.converged(HEAL_S)
        self.stop_all()
        assert [log_info(b.data_dir) for b in self.nodes] == [(size, root)] * len(self.nodes)
        recs = []
        for b in self.nodes:
            audit(b.data_dir)
            recs.append(segment_records(b.data_dir))
        assert len(recs[0]) == size
        assert all(r == recs[0] for r in recs[1:])
        count = collections.Counter(r[3] for r in recs[0] if 3 in r)
        assert [p for p, n in count.items() if n > 1] == []
        assert [p for p in acked if count[p] != 1] == []
        return size


@pytest.fixture
def cluster(net, broker_factory):
    """Three started nodes in NET (net's fixture tears down after the
    brokers are stopped: it was set up first)."""
    return NsCluster(net, broker_factory)


@pytest.fixture
def mesh_cluster(mesh, broker_factory):
    """Three started nodes in MESH."""
    return NsCluster(mesh, broker_factory)


class Stream(threading.Thread):
    """Ledgered QoS 1 publishes (payloads TAG-k) to node I from inside its
    namespace, up to WINDOW unacked, on one MQTT 5 connection (reconnected
    if it drops). Records when each payload was sent and the reason code
    of its PUBACK; a refusal pauses 20 ms."""

    def __init__(self, cl, i, tag, window=16):
        super().__init__(daemon=True)
        self.cl, self.i, self.tag, self.window = cl, i, tag, window
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.sent = {}    # payload -> time.monotonic() before its PUBLISH went out
        self.reason = {}  # payload -> PUBACK reason code
        self.answered = {}  # payload -> time.monotonic() when its PUBACK came
        self.why = collections.defaultdict(set)  # reason code -> reason strings seen
        self.errors = []

    def run(self):
        enter_netns(self.cl.net.ns[self.i])
        k = 0
        while not self.halt.is_set():
            c = None
            try:
                c = V.Client5(self.cl.nodes[self.i].port)
                if c.connect5("stream-%s" % self.tag).reason != 0:
                    raise OSError("CONNACK refused")
                inflight = {}
                while not self.halt.is_set():
                    while len(inflight) < self.window:
                        k += 1
                        payload = b"%s-%d" % (self.tag.encode(), k)
                        pid = k % 65535 + 1
                        with self.lock:
                            self.sent[payload] = time.monotonic()
                        publish(c, "att/s", payload, pid)
                        inflight[pid] = payload
                    p = c.recv5(0.2)
                    if p is None or p.type != R.PUBACK or p.pid not in inflight:
                        continue
                    with self.lock:
                        payload = inflight.pop(p.pid)
                        self.reason[payload] = p.reason
                        self.answered[payload] = time.monotonic()
                        if p.reason:
                            self.why[p.reason].add(V.pget(p.props, V.REASON_STRING))
                    if p.reason:
                        time.sleep(0.02)
            except (OSError, R.Closed, AssertionError) as e:
                self.errors.append(repr(e))
                time.sleep(0.1)
            finally:
                if c is not None:
                    c.close()

    def acked(self):
        with self.lock:
            return [p for p, r in self.reason.items() if r == 0]

    def answered_after(self, t, reason):
        """Payloads sent after monotonic time T answered with REASON."""
        with self.lock:
            return [p for p, r in self.reason.items() if r == reason and self.sent[p] > t]

    def acked_sent_after(self, t):
        """Payloads sent after T and acked 0: [(sent, acked) times]."""
        with self.lock:
            return [(self.sent[p], self.answered[p]) for p, r in self.reason.items()
                    if r == 0 and self.sent[p] > t]

    def finish(self):
        self.halt.set()
        self.join(30)
        assert not self.is_alive()


def state_lines(log, node):
    """The Raft state changes node NODE logged: [(offset, state)]."""
    return [(m.start(), m.group(1)) for m in
            re.finditer(r"raft: node %d: (\w+), term \d+, leader \d+" % node, log)]


def test_isolated_leader_acks_nothing_majority_goes_on(cluster, net):
    """The leader is cut off under a stream of ledgered QoS 1 publishes to
    it: the two others elect a new leader and commit; the old leader steps
    down, acks nothing sent after the cut (those get 0x97, no leader
    known), never leads again while cut off; healed, it follows the new
    leader and all three logs are identical, every acked message in them
    exactly once."""
    cl = cluster
    old = cl.one_leader()
    others = [i for i in range(3) if i != old]
    s = Stream(cl, old, "a")
    s.start()
    try:
        assert wait_for(lambda: len(s.acked()) >= 100, 20), s.errors[-5:]
        since = len(cl.nodes[old].log())
        net.isolate(old)
        cut = time.monotonic()
        new = cl.one_leader(among=others)
        majority = cl.publish_acked(new, "m")
        # the old leader stepped down and refuses what it is sent now
        assert cl.nodes[old].wait_log(r"raft: node %d: (follower|candidate), term" % (old + 1),
                                      since, timeout=15), cl.nodes[old].log()[since:]
        assert wait_for(lambda: s.answered_after(cut, 0x97), 20), s.errors[-5:]
    finally:
        s.finish()
    # nothing sent to it after the cut was acked (the stream stopped
    # before the heal: what it acked was committed with the majority)
    assert s.answered_after(cut, 0) == []
    assert s.why[0x97] and all(NO_LEADER.fullmatch(w) for w in s.why[0x97]), s.why
    assert wait_for(lambda: cl.status(old)["role"] == "candidate", 5, 0.3)
    healed_at = len(cl.nodes[old].log())
    net.heal(old)
    lead = cl.one_leader(timeout=HEAL_S)
    assert lead != old  # its log is behind the majority's: it cannot win a vote
    # healed, it serves again, forwarding to the new leader
    healed = cl.serves(old, "healed")
    changes = [st for off, st in state_lines(cl.nodes[old].log(), old + 1)
               if since <= off < healed_at]
    assert changes and "leader" not in changes, changes
    cl.check_identical(s.acked() + majority + [healed])
    got = {r.get(3) for r in segment_records(cl.nodes[lead].data_dir)}
    # figures, not assertions: pytest -s shows them. "Yet in the log": the
    # outcome unknown of a batch in flight when leadership was lost
    # (docs/CLUSTER.md), refused but committed by the new leader.
    refused = s.answered_after(0, 0x97)
    print("stream to the leader cut off: %d sent, %d acked (all sent before the cut), "
          "%d refused 0x97 (%d of them yet in the log), %d unanswered when it stopped" % (
              len(s.sent), len(s.acked()), len(refused), len([p for p in refused if p in got]),
              len(s.sent) - len(s.reason)))


def test_isolated_follower_catches_up(cluster, net):
    """A follower is cut off while a stream goes to the leader and another
    to that follower (which forwards it): the leader and the other
    follower go on committing without it; the cut-off follower acks
    nothing sent to it after the cut until it is healed (it can apply
    nothing: its acks wait for the local apply); healed, it catches up,
    acks again, and every log is identical, every acked message of both
    streams in it exactly once."""
    cl = cluster
    lead = cl.one_leader()
    fol = [i for i in range(3) if i != lead][0]
    s = Stream(cl, lead, "b")
    f = Stream(cl, fol, "c")
    s.start()
    f.start()
    try:
        assert wait_for(lambda: len(s.acked()) >= 20 and len(f.acked()) >= 20, 20), (
            s.errors[-5:], f.errors[-5:])
        net.isolate(fol)
        cut = time.monotonic()
        n0 = len(s.acked())
        assert wait_for(lambda: len(s.acked()) >= n0 + 100, 30), s.errors[-5:]
        assert log_info(cl.nodes[fol].data_dir)[0] < log_info(cl.nodes[lead].data_dir)[0]
        assert wait_for(lambda: f.answered_after(cut, 0x97), 15), f.errors[-5:]
        healed = time.monotonic()
        net.heal(fol)
        n1 = len(s.acked())
        assert wait_for(lambda: len(s.acked()) >= n1 + 50, 30), s.errors[-5:]
        assert wait_for(lambda: len(f.acked_sent_after(healed)) >= 20, HEAL_S), (
            f.errors[-5:], dict(f.why))
    finally:
        s.finish()
        f.finish()
    assert [t for t in f.acked_sent_after(cut) if t[1] < healed] == []
    # refused after the forward timeout, whatever held it up (no leader, no
    # answer, committed by the leader but not applicable here while cut)
    assert f.why[0x97] and all(re.fullmatch(r"forwarding to the leader failed within 2000 ms: .+|"
                                            r"not the leader: no leader known", w)
                               for w in f.why[0x97]), f.why
    cl.check_identical(s.acked() + f.acked())
    got = {r.get(3) for r in segment_records(cl.nodes[fol].data_dir)}
    refused = f.answered_after(0, 0x97)
    print("stream through the cut-off follower: %d acked, %d refused 0x97 (%d of them yet in "
          "the log)" % (len(f.acked()), len(refused), len([p for p in refused if p in got])))


def test_isolated_node_never_leads(cluster, net):
    """A node cut off never becomes leader (no log line, status never
    'leader', its term does not grow: pre-vote) while the others keep
    committing, and every ledgered publish to it is refused with 0x97 'no
    leader known' (QoS 1 PUBACK, QoS 2 PUBREC) and never recorded; healed,
    one leader for all three."""
    cl = cluster
    lead = cl.one_leader()
    cut_node = [i for i in range(3) if i != lead][1]
    b = cl.nodes[cut_node]
    term = cl.status(cut_node)["term"]
    since = len(b.log())
    net.isolate(cut_node)
    # it notices: no heartbeats, it campaigns (pre-vote) without a quorum
    assert b.wait_log(r"raft: node %d: candidate, term" % (cut_node + 1), since,
                      timeout=15), b.log()[since:]
    assert wait_for(lambda: cl.status(cut_node)["role"] == "candidate", 5, 0.3)
    q1 = cl.client(cut_node, "q1")
    q2 = cl.client(cut_node, "q2")
    publish(q1, "att/q1", b"q1", pid=8)
    q2.send(R.packet(R.PUBLISH, 4, R.mstr("att/q2") + (9).to_bytes(2, "big") + b"\x00" + b"q2"))
    for k in range(6):  # samples over several election timeouts
        st = cl.status(cut_node)
        assert (st["role"], st["leader"], st["term"]) == ("candidate", "0", term), st
        time.sleep(0.3)
    p = q1.expect5(R.PUBACK, 15)  # > cluster_forward_timeout_ms
    assert (p.pid, p.reason) == (8, 0x97) and NO_LEADER.fullmatch(
        V.pget(p.props, V.REASON_STRING)), p
    p = q2.expect5(R.PUBREC, 15)
    assert (p.pid, p.reason) == (9, 0x97) and NO_LEADER.fullmatch(
        V.pget(p.props, V.REASON_STRING)), p
    q1.close()
    q2.close()
    majority = cl.publish_acked(cl.one_leader(among=[lead, 3 - lead - cut_node]), "m")
    healed_at = len(b.log())
    net.heal(cut_node)
    changes = [st for off, st in state_lines(b.log(), cut_node + 1) if since <= off < healed_at]
    assert "leader" not in changes, changes
    cl.one_leader(timeout=HEAL_S)
    cl.check_identical(majority)
    got = {r.get(3) for r in segment_records(cl.nodes[lead].data_dir)}
    assert b"q1" not in got and b"q2" not in got


def test_forwarded_batches_across_leader_cut(cluster, net):
    """A follower forwards a stream of ledgered QoS 1 publishes to the
    leader, and the leader is cut off: batches it had not committed are
    sent again to the new leader (same origin and sequence: applied at
    most once), the stream goes on being acked, and after the heal all
    logs are identical with every acked message exactly once and no
    message twice."""
    cl = cluster
    old = cl.one_leader()
    fol = [i for i in range(3) if i != old][0]
    s = Stream(cl, fol, "f")
    s.start()
    try:
        assert wait_for(lambda: len(s.acked()) >= 100, 20), s.errors[-5:]
        net.isolate(old)
        cut = time.monotonic()
        cl.one_leader(among=[i for i in range(3) if i != old])
        assert wait_for(lambda: len([p for p in s.acked() if s.sent[p] > cut]) >= 100, 30), (
            s.errors[-5:], dict(s.why))
        net.heal(old)
        cl.one_leader(timeout=HEAL_S)
    finally:
        s.finish()
    cl.check_identical(s.acked())
    got = {r.get(3) for r in segment_records(cl.nodes[fol].data_dir)}
    refused = s.answered_after(0, 0x97)
    print("stream through a follower, leader cut off: %d sent, %d acked, %d refused 0x97 "
          "(%d of them yet in the log: %r), %d unanswered when it stopped" % (
              len(s.sent), len(s.acked()), len(refused), len([p for p in refused if p in got]),
              dict(s.why), len(s.sent) - len(s.reason)))


def test_partial_cut_leader_keeps_its_term(mesh_cluster, mesh):
    """Only the link between the leader and one follower is cut (the two
    followers still reach each other), with nothing published meanwhile
    so that both followers' logs are equal: the cut-off follower
    campaigns but cannot disrupt anyone (pre-vote, and the other follower
    still hears from the leader), so the leader keeps its leadership and
    term and commits with the other follower; the cut-off follower never
    leads; rejoined, all logs are identical."""
    cl = mesh_cluster
    lead = cl.one_leader()
    cut_node, other = [i for i in range(3) if i != lead]
    before = cl.publish_acked(lead, "b")
    cl.converged()
    term = {i: cl.status(i)["term"] for i in range(3)}
    since = [len(b.log()) for b in cl.nodes]
    mesh.cut(lead, cut_node)
    b = cl.nodes[cut_node]
    assert b.wait_log(r"raft: node %d: candidate, term" % (cut_node + 1), since[cut_node],
                      timeout=15), b.log()[since[cut_node]:]
    for k in range(6):  # samples over several election timeouts
        st = {i: cl.status(i) for i in (lead, other)}
        assert ((st[lead]["role"], st[lead]["term"]), (st[other]["role"], st[other]["leader"],
                st[other]["term"])) == (("leader", term[lead]), ("follower", str(lead + 1),
                                                                  term[other])), st
        time.sleep(0.3)
    during = cl.publish_acked(lead, "d")
    cut_at = [len(b.log()) for b in cl.nodes]
    mesh.join(lead, cut_node)
    assert cl.one_leader(timeout=HEAL_S) == lead
    changes = {i: [st for off, st in state_lines(cl.nodes[i].log(), i + 1)
                   if since[i] <= off < cut_at[i]] for i in range(3)}
    # while cut: no change on the leader and the other follower, and the
    # cut-off follower went from follower to candidate, never leader
    assert (changes[lead], changes[other]) == ([], []), changes
    assert "leader" not in changes[cut_node], changes
    assert cl.status(lead)["term"] == term[lead]
    cl.check_identical(before + during)


@pytest.mark.parametrize("cut_s,tls", [
    (15, False), (15, True),
    pytest.param(30, False, marks=SOAK_ONLY), pytest.param(30, True, marks=SOAK_ONLY)],
    ids=["15s-tcp", "15s-tls", "30s-tcp", "30s-tls"])
def test_cut_follower_rejoins_soon(net, broker_factory, tmp_path, cut_s, tls):
    """After a CUT_S cut a follower hears from the leader again within 5 s
    of the heal (ten election timeouts), over plain TCP and over TLS. Was
    a defect: the Raft connections waited in TCP's retransmission backoff
    (ss: rto 26 s, backoff 7 after a 30 s cut) and a healed node heard
    from the leader only at the next retransmission (~7 s after a 20 s
    cut, ~24 s after 30 s, ~48 s after 60 s); a stuck connection is now
    closed after four election timeouts (TCP_USER_TIMEOUT, a connect
    deadline) and libraft reconnects (docs/CLUSTER.md "Partitions")."""
    cl = NsCluster(net, broker_factory, tls=cluster_pki(str(tmp_path / "pki")) if tls else None)
    lead = cl.one_leader()
    fol = [i for i in range(3) if i != lead][0]
    b = cl.nodes[fol]
    since = len(b.log())
    net.isolate(fol)
    assert b.wait_log(r"raft: node %d: candidate, term" % (fol + 1), since, timeout=15), b.log()
    time.sleep(cut_s)
    healed_at = len(b.log())
    net.heal(fol)
    healed = time.monotonic()
    assert b.wait_log(r"raft: node %d: follower, term \d+, leader %d$" % (fol + 1, lead + 1),
                      healed_at, timeout=5), b.log()[healed_at:]
    # a figure, not an assertion: pytest -s shows it
    print("%d s cut (%s): follower again %.1f s after the heal" % (
        cut_s, "TLS" if tls else "plain TCP", time.monotonic() - healed))
    cl.check_identical(cl.publish_acked(lead, "after"))
