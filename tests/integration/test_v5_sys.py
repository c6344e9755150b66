"""$SYS/broker/... in Mosquitto's layout (issue 3, point 2), every
sys_interval seconds."""
import re
import time

import v5raw as V
import mqttraw as R
from conftest import ledgermq_only

pytestmark = ledgermq_only("ledgermqd's $SYS topics")

TOPICS = [
    "version", "uptime", "clients/connected", "clients/disconnected", "clients/total",
    "clients/maximum", "subscriptions/count", "messages/received", "messages/sent",
    "messages/dropped", "publish/messages/received", "publish/messages/sent",
    "publish/messages/dropped", "bytes/received", "bytes/sent",
    "retained messages/count",
] + ["load/%s/%s" % (w, s)
     for w in ("messages/received", "messages/sent", "bytes/received", "bytes/sent",
               "connections")
     for s in ("1min", "5min", "15min")]


def collect(c, seconds):
    got = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        p = c.recv5(timeout=max(0.05, end - time.monotonic()))
        if p is not None and p.type == R.PUBLISH:
            got[p.topic[len("$SYS/broker/"):]] = p.payload.decode()
    return got


def test_sys_topics_mosquitto_layout(broker_factory):
    b = broker_factory(config={"sys_interval": 1})
    other = V.Client5(b.port)
    assert other.connect5("sys-other", cprops=V.props((V.SESSION_EXPIRY, 60))).reason == 0
    other.subscribe5([("a/b", 0), ("c/#", 1)])
    other.send(V.disconnect())
    other.wait_closed()
    c = V.Client5(b.port)
    assert c.connect5("sys-watch").reason == 0
    assert c.subscribe5([("$SYS/broker/#", 0)]) == [0]
    c.send(V.publish("x/y", b"1", retain=True))
    time.sleep(2.2)
    got = collect(c, 2.5)
    missing = [t for t in TOPICS if t not in got]
    assert not missing, "missing $SYS topics: %r (got %r)" % (missing, sorted(got))
    assert got["version"].startswith("ledgermqd ")
    assert re.fullmatch(r"\d+ seconds", got["uptime"])
    assert got["clients/connected"] == "1"
    assert got["clients/disconnected"] == "1"
    assert got["clients/total"] == "2"
    assert int(got["clients/maximum"]) >= 1
    assert got["subscriptions/count"] == "3"
    assert int(got["retained messages/count"]) >= 1
    assert int(got["publish/messages/received"]) >= 1
    assert int(got["bytes/received"]) > 0
    assert float(got["load/connections/1min"]) > 0
    # glibc heap counters; absent when a sanitizer's allocator serves malloc
    if "heap/current" in got:
        assert int(got["heap/current"]) > 0
        assert int(got["heap/maximum"]) >= int(got["heap/current"])
    c.abort()
