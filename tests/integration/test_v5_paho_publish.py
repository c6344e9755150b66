"""MQTT 5 PUBLISH, SUBSCRIBE, shared subscriptions, request/response and the
server's DISCONNECT reason codes with paho-mqtt 1.6's v5 client (issue 3,
point 5): one test per behaviour, exact reason codes and properties. The
client class (Paho5: paho with a packet capture around its _packet_handle,
held acks, see test_v5_paho.py's module comment for why) and the paho5
fixture come from test_v5_paho.py."""
import time

import pytest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.subscribeoptions import SubscribeOptions

from conftest import ledgermq_only
from test_v5_paho import DISCONNECT, PUBCOMP, PUBLISH, SUBACK, UNSUBACK, cprops, paho5, props

pytestmark = ledgermq_only("MQTT 5 behaviour of ledgermqd")
_ = paho5  # the fixture, imported for pytest


def pprops(**kw):
    return props(PacketTypes.PUBLISH, **kw)


def sprops(**kw):
    return props(PacketTypes.SUBSCRIBE, **kw)


def client(paho5, port, cid, **start):
    c = paho5(port, cid)
    flags, rc, _ = c.start(**start)
    assert rc == 0
    return c


def offline_subscriber(paho5, port, cid, topic):
    """A session (expiry 600) subscribed to TOPIC at QoS 1, now offline."""
    c = client(paho5, port, cid, clean_start=False, cprops=cprops(SessionExpiryInterval=600))
    assert c.sub(topic, 1) == [1]
    c.stop()
    return c


def resume(paho5, port, cid):
    c = paho5(port, cid)
    flags, rc, _ = c.start(clean_start=False, cprops=cprops(SessionExpiryInterval=600))
    assert rc == 0 and flags["session present"] == 1
    return c


# ------------------------------------------------------------ properties

def test_paho5_publish_properties_passed_through_in_order(broker, paho5):
    s = client(paho5, broker.port, "ppt-s")
    s.sub("ppt/t", 1)
    p = client(paho5, broker.port, "ppt-p")
    ack = p.pub("ppt/t", b"hello", 1, pprops(
        PayloadFormatIndicator=1, ContentType="text/plain", ResponseTopic="ppt/reply",
        CorrelationData=b"\x00\x01id", UserProperty=[("z", "1"), ("a", "2"), ("z", "3")]))
    assert ack.reason == 0x00 and ack.props == {}
    m = s.messages(1)[0]
    assert m.payload == b"hello"
    mp = m.properties
    assert mp.PayloadFormatIndicator == 1 and mp.ContentType == "text/plain"
    assert mp.ResponseTopic == "ppt/reply" and mp.CorrelationData == b"\x00\x01id"
    assert mp.UserProperty == [("z", "1"), ("a", "2"), ("z", "3")]


def test_paho5_request_response(broker, paho5):
    """A responder answers on the request's Response Topic with its
    Correlation Data; the requester gets both back unchanged."""
    responder = client(paho5, broker.port, "prr-resp")
    responder.sub("prr/req", 1)
    requester = client(paho5, broker.port, "prr-req")
    requester.sub("prr/reply/42", 1)
    requester.pub("prr/req", b"what", 1, pprops(ResponseTopic="prr/reply/42",
                                                 CorrelationData=b"c-42"))
    req = responder.messages(1)[0]
    assert req.properties.ResponseTopic == "prr/reply/42"
    responder.pub(req.properties.ResponseTopic, b"answer", 1,
                  pprops(CorrelationData=req.properties.CorrelationData))
    rep = requester.messages(1)[0]
    assert rep.topic == "prr/reply/42" and rep.payload == b"answer"
    assert rep.properties.CorrelationData == b"c-42"


def test_paho5_request_problem_information_0(broker, paho5):
    """Request Problem Information 0: a refusal (PUBACK 0x99) carries no
    Reason String or User Property."""
    c = client(paho5, broker.port, "prpi", cprops=cprops(RequestProblemInformation=0))
    ack = c.pub("prpi/t", b"\xff\xfe", 1, pprops(PayloadFormatIndicator=1))
    assert ack.reason == 0x99 and ack.props == {}


def test_paho5_payload_format_invalid_utf8_puback_0x99(broker, paho5):
    s = client(paho5, broker.port, "ppf-s")
    s.sub("ppf/#", 1)
    c = client(paho5, broker.port, "ppf")
    assert c.pub("ppf/bad", b"\xc3\x28", 1, pprops(PayloadFormatIndicator=1)).reason == 0x99
    assert c.pub("ppf/bad2", b"\xc3\x28", 2, pprops(PayloadFormatIndicator=1)).reason == 0x99
    assert c.pub("ppf/ok", "é".encode(), 1, pprops(PayloadFormatIndicator=1,
                                                   ContentType="text/x")).reason == 0x00
    m = s.messages(1)
    assert [x.topic for x in s.quiet(0.5)] == ["ppf/ok"]
    assert m[0].properties.ContentType == "text/x"


def test_paho5_payload_format_invalid_utf8_qos0_disconnect_0x99(broker, paho5):
    c = client(paho5, broker.port, "ppf0")
    c.pub("ppf0/t", b"\xff", 0, pprops(PayloadFormatIndicator=1))
    assert c.packet(DISCONNECT).reason == 0x99
    assert c.closed()


def test_paho5_qos2_flow_reason_codes(broker, paho5):
    c = client(paho5, broker.port, "pq2")
    rec = c.pub("pq2/t", b"x", 2)
    assert rec.reason == 0x00 and rec.props == {}
    comp = c.packet(PUBCOMP, mid=rec.mid)
    assert comp.reason == 0x00 and comp.props == {}


def test_paho5_pubrel_unknown_id_pubcomp_0x92(broker, paho5):
    c = client(paho5, broker.port, "pq92")
    c.send_raw(0x62, b"\x12\x34")  # PUBREL for an id never received
    comp = c.packet(PUBCOMP, mid=0x1234)
    assert comp.reason == 0x92


# ------------------------------------------------------------ message expiry

def test_paho5_message_expiry_never_delivered(broker, paho5):
    offline_subscriber(paho5, broker.port, "pme-s", "pme/t")
    p = client(paho5, broker.port, "pme-p")
    p.pub("pme/t", b"short", 1, pprops(MessageExpiryInterval=1))
    p.pub("pme/t", b"long", 1, pprops(MessageExpiryInterval=60))
    time.sleep(2.2)
    s = resume(paho5, broker.port, "pme-s")
    assert [m.payload for m in s.messages(1)] == [b"long"]
    assert [m.payload for m in s.quiet(0.5)] == [b"long"]


def test_paho5_message_expiry_remaining_interval_forwarded(broker, paho5):
    offline_subscriber(paho5, broker.port, "pmr-s", "pmr/t")
    p = client(paho5, broker.port, "pmr-p")
    p.pub("pmr/t", b"m", 1, pprops(MessageExpiryInterval=60))
    time.sleep(2.1)
    s = resume(paho5, broker.port, "pmr-s")
    rest = s.messages(1)[0].properties.MessageExpiryInterval
    assert 55 <= rest <= 58, rest


def test_paho5_expired_retained_not_delivered(broker, paho5):
    p = client(paho5, broker.port, "pmx-p")
    p.pub("pmx/t", b"r", 1, retain=True, pprops=pprops(MessageExpiryInterval=1))
    time.sleep(2.2)
    s = client(paho5, broker.port, "pmx-s")
    s.sub("pmx/t", 1)
    assert s.quiet(0.7) == []


# ------------------------------------------------------------ topic aliases

def test_paho5_inbound_topic_alias(broker, paho5):
    s = client(paho5, broker.port, "pta-s")
    s.sub("pta/#", 1)
    c = client(paho5, broker.port, "pta")
    assert c.pub("pta/long/topic", b"1", 1, pprops(TopicAlias=3)).reason == 0
    assert c.pub("", b"2", 1, pprops(TopicAlias=3)).reason == 0
    assert [(m.topic, m.payload) for m in s.messages(2)] == [("pta/long/topic", b"1"),
                                                             ("pta/long/topic", b"2")]


def test_paho5_topic_alias_over_maximum_0x94(broker_factory, paho5):
    b = broker_factory(config={"max_topic_alias": 4})
    c = client(paho5, b.port, "ptx")
    c.pub("ptx/t", b"1", 0, pprops(TopicAlias=5))
    assert c.packet(DISCONNECT).reason == 0x94
    assert c.closed()


def test_paho5_unknown_topic_alias_0x82(broker, paho5):
    c = client(paho5, broker.port, "ptu")
    c.pub("", b"1", 0, pprops(TopicAlias=2))
    assert c.packet(DISCONNECT).reason == 0x82


def test_paho5_outbound_topic_aliases(broker, paho5):
    s = client(paho5, broker.port, "pto-s", cprops=cprops(TopicAliasMaximum=2))
    s.sub("pto/#", 0)
    p = client(paho5, broker.port, "pto-p")
    for t in ("pto/a", "pto/a", "pto/b", "pto/a"):
        p.pub(t, b"x", 0)
    s.messages(4)
    got = [(r.topic, r.props.get("TopicAlias")) for r in s.packets(PUBLISH)]
    assert got == [("pto/a", 1), ("", 1), ("pto/b", 2), ("", 1)]


def test_paho5_no_outbound_aliases_without_client_maximum(broker, paho5):
    s = client(paho5, broker.port, "pton-s")
    s.sub("pton/#", 0)
    p = client(paho5, broker.port, "pton-p")
    p.pub("pton/a", b"x", 0)
    p.pub("pton/a", b"y", 0)
    s.messages(2)
    assert [(r.topic, "TopicAlias" in r.props) for r in s.packets(PUBLISH)] == [
        ("pton/a", False), ("pton/a", False)]


# ------------------------------------------------------------ flow control and sizes

def test_paho5_receive_maximum_exceeded_0x93(broker_factory, paho5):
    b = broker_factory(config={"max_inflight_messages": 2})
    c = paho5(b.port, "prm")
    _, rc, p = c.start()
    assert rc == 0 and p["ReceiveMaximum"] == 2
    c.no_pubrel = True            # QoS 2 stays unreleased at the broker...
    c.max_inflight_messages_set(0)  # ...and paho does not keep to the 2
    for i in range(3):
        c.publish("prm/t", b"%d" % i, 2)
    assert c.packet(DISCONNECT).reason == 0x93
    assert c.closed()


def test_paho5_client_receive_maximum_limits_inflight(broker, paho5):
    s = paho5(broker.port, "pcr-s")
    s.start(cprops=cprops(ReceiveMaximum=2))
    s.sub("pcr/t", 1)
    s.hold_acks = True
    p = client(paho5, broker.port, "pcr-p")
    for i in range(5):
        p.pub("pcr/t", b"%d" % i, 1)
    s.messages(2)
    assert len(s.quiet(0.7)) == 2    # no third before an ack
    s.release()
    assert [m.payload for m in s.messages(5)] == [b"0", b"1", b"2", b"3", b"4"]


def test_paho5_packet_over_server_maximum_0x95(broker_factory, paho5):
    b = broker_factory(config={"max_packet_size": 1024})
    c = paho5(b.port, "pmp")
    _, rc, p = c.start()
    assert rc == 0 and p["MaximumPacketSize"] == 1024
    c.pub("pmp/t", b"x" * 2000, 0)
    assert c.packet(DISCONNECT).reason == 0x95
    assert c.closed()


def test_paho5_client_maximum_packet_size_drops(broker, paho5):
    s = paho5(broker.port, "pcm-s")
    s.start(cprops=cprops(MaximumPacketSize=200))
    s.sub("pcm/t", 1)
    p = client(paho5, broker.port, "pcm-p")
    assert p.pub("pcm/t", b"B" * 500, 1).reason == 0   # accepted, not sent to s
    assert p.pub("pcm/t", b"small", 1).reason == 0
    assert [m.payload for m in s.messages(1)] == [b"small"]
    assert len(s.quiet(0.5)) == 1


# ------------------------------------------------------------ subscriptions

def test_paho5_suback_reason_codes(broker, paho5):
    c = client(paho5, broker.port, "psa")
    assert c.sub([("psa/0", SubscribeOptions(qos=0)), ("psa/1", SubscribeOptions(qos=1)),
                  ("psa/2", SubscribeOptions(qos=2)),
                  ("$share/g", SubscribeOptions(qos=1))]) == [0, 1, 2, 0x8F]
    # paho refuses to send a filter with '#' inside; sent through its queue
    c.send_raw(0x82, b"\x77\x77\x00\x00\x07psa/#/x\x01")
    assert c.packet(SUBACK, mid=0x7777).reason == [0x8F]


def test_paho5_suback_quota_exceeded_0x97(broker_factory, paho5):
    b = broker_factory(config={"max_subscriptions_per_client": 1})
    c = client(paho5, b.port, "psq")
    assert c.sub("psq/a", 1) == [1]
    assert c.sub("psq/b", 1) == [0x97]


def test_paho5_unsuback_reason_codes(broker, paho5):
    c = client(paho5, broker.port, "pus")
    c.sub("pus/a", 1)
    r, mid = c.unsubscribe(["pus/a", "pus/none"])
    assert r == 0
    assert c.packet(UNSUBACK, mid=mid).reason == [0x00, 0x11]


def test_paho5_subscription_identifiers_overlapping(broker, paho5):
    s = client(paho5, broker.port, "psi")
    assert s.sub("psi/+", 1, sprops=sprops(SubscriptionIdentifier=7)) == [1]
    assert s.sub("psi/#", 1, sprops=sprops(SubscriptionIdentifier=300)) == [1]
    assert s.sub("psi/x", 1) == [1]  # no identifier
    client(paho5, broker.port, "psi-p").pub("psi/x", b"m", 1)
    m = s.messages(1)
    assert len(s.quiet(0.5)) == 1    # one delivery for three subscriptions
    assert sorted(m[0].properties.SubscriptionIdentifier) == [7, 300]


def test_paho5_no_local(broker, paho5):
    c = client(paho5, broker.port, "pnl")
    c.sub("pnl/t", options=SubscribeOptions(qos=1, noLocal=True))
    c.pub("pnl/t", b"mine", 1)
    client(paho5, broker.port, "pnl-o").pub("pnl/t", b"other", 1)
    assert [m.payload for m in c.messages(1)] == [b"other"]
    assert len(c.quiet(0.5)) == 1


def test_paho5_retain_as_published(broker, paho5):
    a = client(paho5, broker.port, "prap-a")
    a.sub("prap/t", options=SubscribeOptions(qos=1, retainAsPublished=True))
    n = client(paho5, broker.port, "prap-n")
    n.sub("prap/t", options=SubscribeOptions(qos=1, retainAsPublished=False))
    client(paho5, broker.port, "prap-p").pub("prap/t", b"r", 1, retain=True)
    assert [m.retain for m in a.messages(1)] == [True]
    assert [m.retain for m in n.messages(1)] == [False]


@pytest.mark.parametrize("rh,first,again", [(0, 1, 1), (1, 1, 0), (2, 0, 0)])
def test_paho5_retain_handling(broker, paho5, rh, first, again):
    """Retained messages at SUBSCRIBE: 0 always, 1 only for a new
    subscription, 2 never."""
    client(paho5, broker.port, "prh-p").pub("prh/t", b"kept", 1, retain=True)
    s = client(paho5, broker.port, "prh-s%d" % rh)
    opts = SubscribeOptions(qos=1, retainHandling=rh)
    s.sub("prh/t", options=opts)
    assert len(s.quiet(0.6)) == first
    s.sub("prh/t", options=opts)   # the same subscription again
    got = s.quiet(0.6)
    assert len(got) == first + again
    assert all(m.retain and m.payload == b"kept" for m in got)


# ------------------------------------------------------------ shared subscriptions

def test_paho5_shared_round_robin(broker, paho5):
    a = client(paho5, broker.port, "psh-a")
    b = client(paho5, broker.port, "psh-b")
    assert a.sub("$share/g/psh/#", 1) == [1]
    assert b.sub("$share/g/psh/#", 1) == [1]
    p = client(paho5, broker.port, "psh-p")
    for i in range(6):
        p.pub("psh/t", b"%d" % i, 1)
    a.quiet(0.5)
    got_a = [m.payload for m in a.msgs]
    got_b = [m.payload for m in b.msgs]
    assert len(got_a) == 3 and len(got_b) == 3
    assert sorted(got_a + got_b) == [b"%d" % i for i in range(6)]


def test_paho5_shared_redelivery_when_member_leaves(broker, paho5):
    a = client(paho5, broker.port, "psr-a")
    b = client(paho5, broker.port, "psr-b")
    a.sub("$share/g/psr/t", 1)
    b.sub("$share/g/psr/t", 1)
    a.hold_acks = b.hold_acks = True
    p = client(paho5, broker.port, "psr-p")
    p.pub("psr/t", b"0", 1)
    p.pub("psr/t", b"1", 1)
    a.messages(1)
    b.messages(1)
    unacked = a.msgs[0].payload
    b.release()
    a.vanish()          # leaves with its message unacknowledged
    got = [m.payload for m in b.messages(2)]
    assert len(got) == 2 and got[1] == unacked


# ------------------------------------------------------------ server DISCONNECT

def test_paho5_server_shutdown_disconnect_0x8b(broker, paho5):
    c = client(paho5, broker.port, "psd")
    assert broker.stop() == 0
    d = c.packet(DISCONNECT)
    assert d.reason == 0x8B and d.props == {}


def test_paho5_malformed_packet_disconnect_0x81(broker, paho5):
    c = client(paho5, broker.port, "pmal")
    c.send_raw(0x82, b"\x00\x01\x00\x03a/b")  # SUBSCRIBE without properties/options
    assert c.packet(DISCONNECT).reason == 0x81
    assert c.closed()


def test_paho5_protocol_error_disconnect_0x82(broker, paho5):
    c = client(paho5, broker.port, "pperr")
    c.publish("pperr/t", b"x", 1, properties=pprops(SubscriptionIdentifier=5))  # not from a client
    assert c.packet(DISCONNECT).reason == 0x82
    assert c.closed()
