"""SDP syntax (RFC 8866) and offer/answer for PCMU/PCMA/telephone-event (RFC 3264)."""

from __future__ import annotations

import pytest

from callbridge.sip.errors import NegotiationError, SdpError
from callbridge.sip.ids import SeededIdSource
from callbridge.sip.sdp import (
    Direction,
    SdpNegotiator,
    SessionDescription,
    parse_sdp,
)

LINPHONE_OFFER = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    "s=Talk\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "b=AS:80\r\n"
    "t=0 0\r\n"
    "a=rtcp-xr:rcvr-rtt=all\r\n"
    "m=audio 7078 RTP/AVP 96 8 0 101\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 useinbandfec=1\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:30\r\n"
    "m=video 9078 RTP/AVP 97\r\n"
    "a=rtpmap:97 H264/90000\r\n"
)


def negotiator(**kw: object) -> SdpNegotiator:
    return SdpNegotiator("203.0.113.5", 20000, SeededIdSource(3), **kw)  # type: ignore[arg-type]


def test_parse_and_serialise() -> None:
    sdp = parse_sdp(LINPHONE_OFFER.encode())
    assert sdp.origin.username == "alice" and sdp.origin.sess_version == 2890844526
    assert sdp.connection == "192.0.2.10" and sdp.session_name == "Talk"
    audio, video = sdp.media
    assert audio.formats == ["96", "8", "0", "101"] and audio.port == 7078
    assert audio.rtpmap()["96"] == ("opus", 48000)
    assert audio.fmtp("101") == "0-15" and audio.fmtp("8") is None
    assert audio.attribute("ptime") == "30" and audio.direction() is Direction.SENDRECV
    assert video.media == "video"
    again = parse_sdp(sdp.to_bytes())
    assert again.to_bytes() == sdp.to_bytes()
    assert b"b=AS:80\r\nt=0 0\r\n" in sdp.to_bytes()
    assert parse_sdp(LINPHONE_OFFER.replace("\r\n", "\n")).media[0].port == 7078


@pytest.mark.parametrize(
    "text",
    [
        "",
        "v=1\r\n",
        "v=0\r\no=a 1 x IN IP4 h\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\ns=-\r\nt=0 0\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nc=IN IPX h\r\nt=0 0\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nbad line\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\na=\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n",
        "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nx=1\r\n",
    ],
)
def test_bad_sdp(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)
    with pytest.raises(SdpError):
        parse_sdp(b"\xff\xfe")


def test_offer_contents() -> None:
    offer = negotiator().create_offer()
    text = offer.to_bytes().decode()
    assert text.startswith("v=0\r\no=callbridge ")
    for line in [
        "s=-",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "m=audio 20000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]:
        assert line + "\r\n" in text
    assert (
        "m=audio 20000 RTP/AVP 8 0 101"
        in negotiator(codecs=("PCMA", "PCMU")).create_offer().to_bytes().decode()
    )
    with pytest.raises(ValueError):
        negotiator(codecs=("G729",))


def test_answer_picks_offerer_preference_and_reuses_payload_types() -> None:
    neg = negotiator()
    answer, result = neg.create_answer(parse_sdp(LINPHONE_OFFER))
    assert result.codec == "PCMA" and result.payload_type == 8
    assert result.dtmf_payload_type == 101
    assert (result.remote_address, result.remote_port) == ("192.0.2.10", 7078)
    assert result.direction is Direction.SENDRECV and result.remote_ptime == 30
    audio, video = answer.media
    assert audio.formats == ["8", "101"] and audio.port == 20000
    assert audio.attribute("ptime") == "20"
    assert video.port == 0 and video.formats == ["97"]
    # Dynamic PT mapped to PCMU; names compare case-insensitively.
    dyn = LINPHONE_OFFER.replace("RTP/AVP 96 8 0 101", "RTP/AVP 96 101").replace(
        "opus/48000/2", "pcmu/8000"
    )
    _answer, result = negotiator().create_answer(parse_sdp(dyn))
    assert result.codec == "PCMU" and result.payload_type == 96


def test_no_common_codec_raises_for_488() -> None:
    offer = LINPHONE_OFFER.replace("RTP/AVP 96 8 0 101", "RTP/AVP 96 18")
    with pytest.raises(NegotiationError):
        negotiator().create_answer(parse_sdp(offer))
    only_video = "v=0\r\no=a 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=video 1 RTP/AVP 31\r\n"
    with pytest.raises(NegotiationError):
        negotiator().create_answer(parse_sdp(only_video))
    pcma_only = negotiator(codecs=("PCMA",))
    with pytest.raises(NegotiationError):
        pcma_only.create_answer(parse_sdp(LINPHONE_OFFER.replace("96 8 0 101", "0 101")))
    disabled = LINPHONE_OFFER.replace("m=audio 7078", "m=audio 0")
    with pytest.raises(NegotiationError):
        negotiator().create_answer(parse_sdp(disabled))


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("sendonly", Direction.RECVONLY),
        ("recvonly", Direction.SENDONLY),
        ("inactive", Direction.INACTIVE),
        ("sendrecv", Direction.SENDRECV),
    ],
)
def test_answer_direction_mapping(offered: str, expected: Direction) -> None:
    offer = LINPHONE_OFFER.replace("a=ptime:30", f"a=ptime:30\r\na={offered}")
    answer, result = negotiator().create_answer(parse_sdp(offer))
    assert result.direction is expected
    assert answer.media[0].direction() is expected


def test_session_level_direction_and_legacy_hold() -> None:
    session = LINPHONE_OFFER.replace("a=rtcp-xr:rcvr-rtt=all", "a=sendonly")
    _a, result = negotiator().create_answer(parse_sdp(session))
    assert result.direction is Direction.RECVONLY
    legacy = LINPHONE_OFFER.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0")
    _a, result = negotiator().create_answer(parse_sdp(legacy))
    assert result.direction is Direction.RECVONLY


def test_hold_and_resume_with_version_bumps() -> None:
    neg = negotiator()
    first = neg.create_offer()
    version = first.origin.sess_version
    assert neg.create_offer().origin.sess_version == version  # refresh: unchanged
    neg.hold = True
    held = neg.create_offer()
    assert held.media[0].direction() is Direction.SENDONLY
    assert held.origin.sess_version == version + 1
    neg.hold = False
    resumed = neg.create_offer()
    assert resumed.media[0].direction() is Direction.SENDRECV
    assert resumed.origin.sess_version == version + 2
    assert resumed.origin.sess_id == first.origin.sess_id


def test_answer_while_holding() -> None:
    neg = negotiator()
    neg.hold = True
    _a, result = neg.create_answer(parse_sdp(LINPHONE_OFFER))
    assert result.direction is Direction.SENDONLY
    offer = LINPHONE_OFFER.replace("a=ptime:30", "a=ptime:30\r\na=sendonly")
    _a, result = neg.create_answer(parse_sdp(offer))
    assert result.direction is Direction.INACTIVE


def test_offer_in_200_answer_in_ack() -> None:
    """INVITE without SDP: callbridge offers in the 200, the peer answers in the ACK."""
    neg = negotiator()
    offer = neg.create_offer()
    peer = negotiator()
    answer, peer_result = peer.create_answer(parse_sdp(offer.to_bytes()))
    assert peer_result.codec == "PCMU" and peer_result.dtmf_payload_type == 101
    result = neg.process_answer(parse_sdp(answer.to_bytes()))
    assert result.codec == "PCMU" and result.payload_type == 0
    assert result.dtmf_payload_type == 101 and result.direction is Direction.SENDRECV
    with pytest.raises(SdpError):
        neg.process_answer(answer)  # nothing pending any more


def test_bad_answers() -> None:
    neg = negotiator()
    neg.create_offer()
    two = SessionDescription(neg.create_offer().origin, media=[])
    with pytest.raises(NegotiationError):
        neg.process_answer(two)
    neg.create_offer()
    bad_codec = "v=0\r\no=b 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4 h\r\nt=0 0\r\nm=audio 5 RTP/AVP 18\r\n"
    with pytest.raises(NegotiationError):
        neg.process_answer(parse_sdp(bad_codec))
    neg.create_offer()
    rejected = bad_codec.replace("m=audio 5 RTP/AVP 18", "m=audio 0 RTP/AVP 0")
    with pytest.raises(NegotiationError):
        neg.process_answer(parse_sdp(rejected))


def test_remote_version_tracking() -> None:
    neg = negotiator()
    sdp = parse_sdp(LINPHONE_OFFER)
    assert neg.remote_changed(sdp)
    assert not neg.remote_changed(parse_sdp(LINPHONE_OFFER))
    sdp.origin.sess_version += 1
    assert neg.remote_changed(sdp)


def test_ipv6_connection_and_direction_helpers() -> None:
    neg = SdpNegotiator("2001:db8::1", 30000, SeededIdSource(1))
    assert "c=IN IP6 2001:db8::1" in neg.create_offer().to_bytes().decode()
    assert Direction.SENDONLY.sends and not Direction.SENDONLY.receives
    assert Direction.SENDRECV.answer() is Direction.SENDRECV
