"""Ack latency and throughput of ledgered publishes through a follower
(forwarded to the leader over the cluster channel) next to the same
publishes to the leader, on a 3-node cluster on loopback (docs/CLUSTER.md
"Forwarding"). A benchmark, not a test: it prints figures and asserts only
that every publish was acked 0.

  LMQ_BUILD_DIR=$PWD/build /usr/bin/python3 -m pytest -q -s -p no:cacheprovider \\
      bench/cluster_forward_bench.py

One MQTT 5 publisher per run, attested QoS 1, WINDOW publishes in flight
(1: one at a time, the ack latency; 100: pipelined, the throughput);
latency from PUBLISH sent to its PUBACK."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))

import mqttraw as R  # noqa: E402
from conftest import broker_factory  # noqa: E402,F401 (the fixture)
from test_cluster import Cluster, publish  # noqa: E402
from test_cluster_forward import leader_of, v5  # noqa: E402


def run(port, n, window, tag):
    c = v5(port, "bench-" + tag)
    lat, sent = [], {}
    k = acked = 0
    t0 = time.monotonic()
    while acked < n:
        while k < n and k - acked < window:
            k += 1
            sent[k] = time.monotonic()
            publish(c, "att/bench", b"%s-%d" % (tag.encode(), k), pid=k)
        a = c.expect5(R.PUBACK, 30)
        assert a.reason == 0, a.reason
        lat.append(time.monotonic() - sent[a.pid])
        acked += 1
    dt = time.monotonic() - t0
    c.close()
    lat.sort()
    return n / dt, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def test_forward_bench(broker_factory):  # noqa: F811
    hb = int(os.environ.get("HEARTBEAT_MS", "50"))
    cl = Cluster(broker_factory, forward=True, config={"cluster_heartbeat_ms": hb})
    lead = leader_of(cl)
    fol = [i for i in range(3) if i != lead][0]
    for window, n in ((1, 300), (100, 3000)):
        for name, i in (("leader", lead), ("follower", fol)):
            r = run(cl.nodes[i].port, n, window, "%s%d" % (name, window))
            print("heartbeat %d ms, to the %-8s window %3d: %d msgs, %.0f msg/s, p50 %.1f ms, "
                  "p99 %.1f ms" % ((hb, name, window, n) + r))
