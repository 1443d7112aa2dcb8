"""The one SDP parser (analysis.sdp) and the agents' views of it (no root)."""
from __future__ import annotations

from agents import baresip_conf
from agents.sdp import parse_sdp as agent_sdp
from analysis.sdp import RtpMap, parse_sdp

OFFER = ("v=0\r\no=- 1 1 IN IP4 172.16.10.12\r\ns=-\r\nc=IN IP4 172.16.10.12\r\nt=0 0\r\n"
         "m=audio 4000 RTP/AVP 0 97 101\r\nc=IN IP4 198.51.100.2\r\na=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:97 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n"
         "a=rtcp:4005 IN IP4 198.51.100.9\r\n"
         "m=video 4002 RTP/AVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
         "m=audio 4010 RTP/AVP 8\r\nc=IN IP4 224.2.1.1/127\r\n"
         "m=application 0 UDP/BFCP *\r\n")


def test_media_sections() -> None:
    sdp = parse_sdp(OFFER)
    assert [(m.kind, m.port, m.proto, m.pts, m.addr) for m in sdp.media] == [
        ("audio", 4000, "RTP/AVP", [0, 97, 101], "198.51.100.2"),
        ("video", 4002, "RTP/AVPF", [96], "172.16.10.12"),  # session-level c=
        ("audio", 4010, "RTP/AVP", [8], "224.2.1.1"),  # multicast TTL dropped
        ("application", 0, "UDP/BFCP", [], "172.16.10.12")]
    audio = sdp.media[0]
    assert audio.rtpmap[97] == RtpMap("opus", 48000, "2") and str(audio.rtpmap[97]) == \
        "opus/48000/2"
    assert (audio.rtcp, audio.rtcp_addr) == (4005, "198.51.100.9")
    assert audio.codec(97) == "opus/48000" and audio.codec(8) == "PCMA/8000"
    assert audio.pt_of("TELEPHONE-EVENT") == 101 and audio.pt_of("VP8") is None
    assert [m.is_rtp for m in sdp.media] == [True, True, True, False]
    assert (sdp.addr, sdp.audio_port, sdp.video_port) == ("198.51.100.2", 4000, 4002)


def test_accessors_without_media_or_connection() -> None:
    sdp = parse_sdp("v=0\r\nc=IN IP6 2001:db8::5\r\ns=-\r\n")
    assert (sdp.addr, sdp.audio_port, sdp.video_port) == ("2001:db8::5", None, None)
    bad = parse_sdp("v=0\r\nm=audio x RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\nm=video 9\r\n")
    assert bad.media == [] and bad.session_addr is None  # malformed m= lines are skipped


def test_sip_message_headers_are_skipped() -> None:
    msg = "INVITE sip:x SIP/2.0\r\nCSeq: 1 INVITE\r\nc: application/sdp\r\n\r\n" + OFFER
    assert parse_sdp(msg).audio_port == 4000
    assert agent_sdp(msg) == {"addr": "198.51.100.2", "port": 4000}  # the agents' report
    assert agent_sdp("v=0\r\nm=audio 4000 RTP/AVP 0\r\n") is None  # no address at all


def test_baresip_view_is_first_media_of_each_kind() -> None:
    media = baresip_conf.parse_sdp(OFFER)
    assert sorted(media) == ["application", "audio", "video"]
    assert media["audio"].port == 4000 and media["video"].pt_of("VP8") == 96
    assert media["audio"].codec(0) == "PCMU/8000" and media["audio"].rtcp == 4005
