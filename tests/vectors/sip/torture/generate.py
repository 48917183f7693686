"""Generate callbridge's SIP torture messages (one ``<case>.dat`` per case, next to this file).

Every message was written for callbridge. Each one is *modelled on* the description of the
RFC 4475 §3 case whose short name it carries (the property that case exercises), but none of
them reproduces the RFC's own octets: hosts, users, tags, branches, Call-IDs and bodies are
ours (``callbridge.test``, ``example.test`` and the RFC 5737 documentation addresses).

Usage::

    python tests/vectors/sip/torture/generate.py          # (re)write every .dat file
    python tests/vectors/sip/torture/generate.py --check  # exit 1 if a file differs

Messages are built from lists of header lines joined with CRLF. A list item that starts with
SP or HTAB is a folded continuation of the previous line (RFC 3261 §7.3.1). The marker
``<LEN>`` in a header line is replaced by the exact length of the body; cases about broken
framing write their (wrong) Content-Length literally. Python escapes (``\\x00``, ``\\u00e9``)
keep this file ASCII while the messages carry control octets and UTF-8 where a case needs them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Callable

HERE = pathlib.Path(__file__).resolve().parent
CRLF = "\r\n"
LEN = "<LEN>"

CASES: dict[str, Callable[[], bytes]] = {}


def case(func: Callable[[], bytes]) -> Callable[[], bytes]:
    """Register a case under its function name (the RFC 4475 short name it models)."""
    CASES[func.__name__] = func
    return func


def message(start: str, headers: list[str], body: bytes = b"") -> bytes:
    """Start line, header lines (``<LEN>`` filled in), empty line, body."""
    lines = [start, *(h.replace(LEN, str(len(body))) for h in headers)]
    return (CRLF.join(lines) + CRLF + CRLF).encode("utf-8") + body


def sdp(user: str, addr: str, port: int, session: int) -> bytes:
    """A small audio offer (RFC 4566) with CRLF line ends."""
    lines = [
        "v=0",
        f"o={user} {session} {session + 1} IN IP4 {addr}",
        "s=callbridge torture",
        f"c=IN IP4 {addr}",
        "t=0 0",
        f"m=audio {port} RTP/AVP 0 8 101",
        "a=rtpmap:101 telephone-event/8000",
    ]
    return (CRLF.join(lines) + CRLF).encode("ascii")


# ---------------------------------------------------------------------------------------------
# §3.1.1 valid messages
# ---------------------------------------------------------------------------------------------


@case
def wsinv() -> bytes:
    """Folding everywhere, LWS around ':' ';' '=' and '/', odd header-name case, compact forms,
    leading zeros, an empty header, unknown headers with odd values, escaped quotes."""
    return message(
        "INVITE sip:conf-room7@bridge.callbridge.test;oddparam SIP/2.0",
        [
            "TO :",
            " sip:conf-room7@bridge.callbridge.test ;   tag    = 77aa19qz",
            r'from   : "Mallory \\\"" <sip:mallory@example.test>',
            "  ;",
            "  tag = x7kd02",
            "MaX-fOrWaRdS: 0042",
            "i: ws-Inv.7731@198.51.100.14",
            "Content-Length   : <LEN>",
            "cseq: 0017",
            "  INVITE",
            "Via  : SIP  /   2.0",
            " /UDP",
            "    198.51.100.14;branch=z9hG4bKws77a1",
            "s :",
            "BrandNewHeader:   brand new value",
            " continued brand new value",
            "WeirdlyPunctuated: ,;;,;,,;",
            "c: application/sdp",
            "Route:",
            " <sip:edge.callbridge.test;lr>",
            "v:  SIP  / 2.0  / TCP     relay.example.test   ;",
            "  branch   =   z9hG4bKws22b",
            " ,  SIP  /    2.0   / UDP  203.0.113.40:5060 ;branch=z9hG4bKws33c",
            r'm:"Bridge \"front\" desk" <sip:mallory@198.51.100.14> ; newparam =',
            "\t  newvalue ;",
            "  secondparam ; q = 0.33",
        ],
        sdp("mallory", "198.51.100.14", 49170, 7731),
    )


INTMETH_METHOD = "~Callbridge.verb-0123456789_!%*+`'"
INTMETH_USER = "o_d.d~(user!)&x'y+z$/?,/;;*=1"
INTMETH_PASSWORD = "&pa$s+w=rd,0!*~_.(it's-odd)"


@case
def intmeth() -> bytes:
    """Every token character in the method, tag and branch; every legal user/password character
    in the Request-URI; BEL, NUL and DEL as quoted-pairs; a Call-ID using the word characters;
    an extension header whose name is all token characters and whose value is UTF-8."""
    return message(
        f"{INTMETH_METHOD} sip:{INTMETH_USER}:{INTMETH_PASSWORD}@intmeth.callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/TCP host9.callbridge.test;branch=z9hG4bK-.!%61*_+`'~",
            'To: "bell\\\x07 null\\\x00 delete\\\x7f" <sip:odd.target@callbridge.test>',
            "From: <sip:caller@example.test>;tag=_tok.en-9~'+`*%!",
            'Call-ID: 0123.intmeth()<>:\\"/[]?{}~`@callbridge.test',
            f"CSeq: 139122385 {INTMETH_METHOD}",
            "Max-Forwards: 255",
            "Extension-!.%*+_`'~: caf\u00e9 \u2192 \u65e5\u672c\u8a9e",
            "Content-Length: 0",
        ],
    )


@case
def esc01() -> bytes:
    """Legal %-escapes: a Request-URI user part that unescapes to a whole SIPS URI, escaped
    characters in From and in Contact parameter names and values."""
    return message(
        "INVITE sip:sips%3Acarol%40example.test@edge.callbridge.test SIP/2.0",
        [
            "To: <sip:sips%3Acarol%40example.test@edge.callbridge.test>",
            "From: <sip:%64ave@callbridge.test>;tag=e5c01",
            "Max-Forwards: 70",
            "Call-ID: esc01.8842@callbridge.test",
            "Via: SIP/2.0/UDP 198.51.100.31;branch=z9hG4bKe5c01a",
            "CSeq: 3 INVITE",
            "Contact: <sip:d%61ve@198.51.100.31;%6C%72;t%79pe=v%61l%25%34%32>",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("dave", "198.51.100.31", 50000, 8842),
    )


@case
def escnull() -> bytes:
    """%00 (an escaped NUL) in the user part of To, From and two Contacts of a REGISTER."""
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "To: sip:nul%00end@callbridge.test",
            "From: sip:nul%00end@callbridge.test;tag=n0ll7",
            "Call-ID: escnull.33@198.51.100.50",
            "Max-Forwards: 70",
            "CSeq: 41 REGISTER",
            "Via: SIP/2.0/UDP 198.51.100.50;branch=z9hG4bKnul7",
            "Contact: <sip:%00@198.51.100.50>",
            "Contact: <sip:x%00%00y@198.51.100.50>",
            "L: 0",
        ],
    )


@case
def esc02() -> bytes:
    """'%' where it is not an escape: in the method (a token), in a header *name* (so it is an
    unknown header, not Contact) and in a quoted display name with a broken escape."""
    return message(
        "OPT%49ONS sip:desk@callbridge.test SIP/2.0",
        [
            'To: "%Z%45 not an escape" <sip:desk@callbridge.test>',
            "From: <sip:caller@example.test>;tag=pct02",
            "Max-Forwards: 70",
            "C%6Fntact: <sip:alt2@host2.example.test>",
            "Call-ID: esc02.5150@example.test",
            "Via: SIP/2.0/UDP host1.example.test;branch=z9hG4bKpct02",
            "Contact: <sip:alt1@host1.example.test>",
            "Contact: <sip:alt3@host3.example.test>",
            "CSeq: 11 OPT%49ONS",
            "l: 0",
        ],
    )


@case
def lwsdisp() -> bytes:
    """No whitespace between a display name (token or quoted) and the '<' of the URI."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            "To: desk<sip:desk@callbridge.test>",
            "From: frontdesk<sip:front@callbridge.test>;tag=nolws4",
            "Max-Forwards: 70",
            "Call-ID: lwsdisp.61@callbridge.test",
            "Via: SIP/2.0/UDP 198.51.100.60;branch=z9hG4bKnolws4",
            "CSeq: 2 OPTIONS",
            'Contact: "Front Desk"<sip:front@198.51.100.60>',
            "Content-Length: 0",
        ],
    )


LONGREQ_USER = "".join(f"seg{i:03d}." for i in range(50)) + "end"
LONGREQ_TO_TAG = "to" + "0123456789abcdef" * 20
LONGREQ_FROM_TAG = "from" + "fedcba9876543210" * 20
LONGREQ_CALL_ID = "longreq." + "c4llbr1dge" * 40 + "@callbridge.test"
LONGREQ_BRANCH = "z9hG4bK" + "longbranch" * 25
LONGREQ_HEADER_NAME = "X-" + "Callbridge" * 30
LONGREQ_SINGLE_VIAS = 30
LONGREQ_LIST_VIAS = 40
LONGREQ_FOLDED_VIAS = 10


@case
def longreq() -> bytes:
    """Very long values: Request-URI user, display name, tags, Call-ID, branch, an unknown header
    name and value, an SDP attribute; 80 Via entries (single, comma-listed and folded)."""
    display = " ".join(f"Desk{i}" for i in range(60))
    headers = [
        f'To: "{display}" <sip:{LONGREQ_USER}@longreq.callbridge.test>;tag={LONGREQ_TO_TAG}',
        f"From: <sip:caller@example.test>;tag={LONGREQ_FROM_TAG}",
        f"Call-ID: {LONGREQ_CALL_ID}",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        f"Via: SIP/2.0/UDP 198.51.100.77;branch={LONGREQ_BRANCH}",
    ]
    for i in range(1, LONGREQ_SINGLE_VIAS):
        headers.append(
            f"Via: SIP/2.0/UDP relay{i:02d}.callbridge.test:{5060 + i};branch=z9hG4bKr{i}"
        )
    headers.append(
        "Via: "
        + ", ".join(
            f"SIP/2.0/TCP hop{i:02d}.example.test;branch=z9hG4bKhop{i:02d}"
            for i in range(LONGREQ_LIST_VIAS)
        )
    )
    headers.append("Via: SIP/2.0/SCTP fold00.example.test;branch=z9hG4bKf00")
    headers.extend(
        f"   , SIP/2.0/SCTP fold{i:02d}.example.test;branch=z9hG4bKf{i:02d}"
        for i in range(1, LONGREQ_FOLDED_VIAS)
    )
    headers += [
        f"{LONGREQ_HEADER_NAME}: a header with a very long name",
        "X-Long-Value: " + ", ".join(f"item{i:04d}" for i in range(300)),
        f"Contact: <sip:{LONGREQ_USER}@198.51.100.77>",
        "Content-Type: application/sdp",
        "Content-Length: <LEN>",
    ]
    body = sdp("caller", "198.51.100.77", 40400, 1) + b"a=x-long:" + b"0123456789" * 100 + b"\r\n"
    return message(f"INVITE sip:{LONGREQ_USER}@longreq.callbridge.test SIP/2.0", headers, body)


@case
def dblreq() -> bytes:
    """A REGISTER with Content-Length: 0 followed, in the same datagram, by a whole INVITE."""
    first = message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "To: <sip:erin@callbridge.test>",
            "From: <sip:erin@callbridge.test>;tag=dbl0a",
            "Call-ID: dblreq.900@198.51.100.90",
            "CSeq: 8 REGISTER",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.51.100.90;branch=z9hG4bKdbl0a",
            "Contact: <sip:erin@198.51.100.90>",
            "Content-Length: 0",
        ],
    )
    second = message(
        "INVITE sip:frank@callbridge.test SIP/2.0",
        [
            "To: <sip:frank@callbridge.test>",
            "From: <sip:erin@callbridge.test>;tag=dbl0b",
            "Call-ID: dblreq.901@198.51.100.90",
            "CSeq: 1 INVITE",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.51.100.90;branch=z9hG4bKdbl0b",
            "Contact: <sip:erin@198.51.100.90>",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("erin", "198.51.100.90", 41000, 901),
    )
    return first + second


@case
def semiuri() -> bytes:
    """';' inside the Request-URI user part (so no URI parameters) and a comma-listed Accept
    split over two header instances."""
    return message(
        "OPTIONS sip:desk;room=b%402@callbridge.test SIP/2.0",
        [
            "To: <sip:desk;room=b%402@callbridge.test>",
            "From: <sip:caller@example.test>;tag=semi9",
            "Call-ID: semiuri.4@example.test",
            "CSeq: 9 OPTIONS",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 203.0.113.9;branch=z9hG4bKsemi9",
            "Accept: application/sdp, text/plain",
            "Accept: multipart/mixed, application/pidf+xml,  message/sipfrag",
            "l: 0",
        ],
    )


TRANSPORTS = ["UDP", "SCTP", "TLS", "CARRIER-PIGEON", "TCP", "WSS"]


@case
def transports() -> bytes:
    """Via entries over known, less common and unknown transports."""
    vias = [
        f"Via: SIP/2.0/{t} hop{i}.example.test;branch=z9hG4bKtr{i:02d}"
        for i, t in enumerate(TRANSPORTS)
    ]
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            *vias,
            "To: <sip:desk@callbridge.test>",
            "From: <sip:caller@example.test>;tag=trx6",
            "Call-ID: transports.66@example.test",
            "CSeq: 6 OPTIONS",
            "Max-Forwards: 64",
            "Contact: <sip:caller@hop0.example.test;transport=carrier-pigeon>",
            "Content-Length: 0",
        ],
    )


MPART_BOUNDARY = "cb-boundary-7f3a"
MPART_BINARY = bytes((i * 151 + 7) % 256 for i in range(96))


@case
def mpart01() -> bytes:
    """A multipart/mixed body: an SDP part and a binary part holding CR, LF, NUL and 8-bit
    octets; Content-Length counts every octet."""
    delim = f"--{MPART_BOUNDARY}".encode()
    body = (
        delim
        + b"\r\nContent-Type: application/sdp\r\n\r\n"
        + sdp("grace", "198.51.100.44", 42000, 44)
        + b"\r\n"
        + delim
        + b"\r\nContent-Type: application/octet-stream\r\n"
        + b"Content-Disposition: attachment;handling=optional\r\n"
        + b"Content-Transfer-Encoding: binary\r\n\r\n"
        + MPART_BINARY
        + b"\r\n"
        + delim
        + b"--\r\n"
    )
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.44;branch=z9hG4bKmp01",
            "Max-Forwards: 70",
            "To: <sip:desk@callbridge.test>",
            "From: <sip:grace@example.test>;tag=mp01g",
            "Call-ID: mpart01.2323@example.test",
            "CSeq: 1 INVITE",
            "Contact: <sip:grace@198.51.100.44>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed;boundary="{MPART_BOUNDARY}"',
            "Content-Length: <LEN>",
        ],
        body,
    )


UNREASON_PHRASE = "Parfait \u2014 200 = 8 \u00d7 25; \u00e7a marche! (SIP/2.0 200 OK) \u263a"


@case
def unreason() -> bytes:
    """A 200 whose reason phrase has UTF-8, punctuation and text that looks like a status line."""
    return message(
        f"SIP/2.0 200 {UNREASON_PHRASE}",
        [
            "Via: SIP/2.0/UDP 198.51.100.21;branch=z9hG4bKunr1;received=203.0.113.21",
            "To: <sip:desk@callbridge.test>;tag=unr1b",
            "From: <sip:heidi@example.test>;tag=unr1a",
            "Call-ID: unreason.21@example.test",
            "CSeq: 1 INVITE",
            "Contact: <sip:desk@203.0.113.5>",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("desk", "203.0.113.5", 43000, 21),
    )


@case
def noreason() -> bytes:
    """A provisional response whose reason phrase is empty (the SP before it is kept)."""
    return message(
        "SIP/2.0 100 ",
        [
            "Via: SIP/2.0/UDP 198.51.100.22;branch=z9hG4bKnor1",
            "To: <sip:desk@callbridge.test>",
            "From: <sip:ivan@example.test>;tag=nor1a",
            "Call-ID: noreason.22@example.test",
            "CSeq: 5 INVITE",
            "Content-Length: 0",
        ],
    )


# ---------------------------------------------------------------------------------------------
# §3.1.2 invalid messages
# ---------------------------------------------------------------------------------------------


@case
def badinv01() -> bytes:
    """Stray ';' and ',' without parameters in Via, and a Contact missing its closing '>'."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "To: sip:desk@callbridge.test",
            "From: sip:judy@example.test;tag=bi01x",
            "Max-Forwards: 70",
            "Call-ID: badinv01.2207@example.test",
            "Via: SIP/2.0/UDP 198.51.100.88;;,;,,",
            'Contact: "Judy" <sip:judy@198.51.100.88;lr',
            "CSeq: 1 INVITE",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("judy", "198.51.100.88", 44000, 88),
    )


@case
def clerr() -> bytes:
    """Content-Length claims far more octets than the datagram holds."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Max-Forwards: 70",
            "To: <sip:desk@callbridge.test>",
            "From: <sip:ken@example.test>;tag=cle1",
            "Call-ID: clerr.3131@example.test",
            "CSeq: 4 INVITE",
            "Via: SIP/2.0/UDP 198.51.100.31;branch=z9hG4bKcle1",
            "Contact: <sip:ken@198.51.100.31>",
            "Content-Type: application/sdp",
            "Content-Length: 4096",
        ],
        sdp("ken", "198.51.100.31", 45000, 31),
    )


@case
def ncl() -> bytes:
    """A negative Content-Length."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Max-Forwards: 70",
            "To: <sip:desk@callbridge.test>",
            "From: <sip:lena@example.test>;tag=ncl2",
            "Call-ID: ncl.4242@example.test",
            "CSeq: 2 INVITE",
            "Via: SIP/2.0/UDP 198.51.100.42;branch=z9hG4bKncl2",
            "Content-Type: application/sdp",
            "Content-Length: -271",
        ],
        sdp("lena", "198.51.100.42", 46000, 42),
    )


@case
def scalar02() -> bytes:
    """Request scalars beyond their range: CSeq > 2**32-1, Max-Forwards > 255, Expires and a
    Contact expires parameter far beyond 2**32-1."""
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/TCP 198.51.100.12:5070;branch=z9hG4bKsc02",
            "Max-Forwards: 300",
            "From: <sip:mike@callbridge.test>;tag=sc02m",
            "To: <sip:mike@callbridge.test>",
            "Call-ID: scalar02.1212@198.51.100.12",
            "CSeq: 36893488147419103232 REGISTER",
            "Contact: <sip:mike@198.51.100.12:5070>;expires=281474976710656",
            "Expires: 99999999999999999999",
            "Content-Length: 0",
        ],
    )


@case
def scalarlg() -> bytes:
    """Response scalars beyond their range: CSeq, Retry-After and a four-digit warn-code."""
    return message(
        "SIP/2.0 503 Service Unavailable",
        [
            "Via: SIP/2.0/UDP 198.51.100.13;branch=z9hG4bKslg1",
            "To: <sip:desk@callbridge.test>;tag=slg1b",
            "From: <sip:nina@example.test>;tag=slg1a",
            "Call-ID: scalarlg.1313@example.test",
            "CSeq: 73786976294838206464 OPTIONS",
            "Retry-After: 18446744073709551616",
            'Warning: 3999 edge.callbridge.test "far too many digits"',
            "Content-Length: 0",
        ],
    )


@case
def quotbal() -> bytes:
    """A display name whose opening quote is never closed."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            'To: "Front Desk <sip:desk@callbridge.test>',
            "From: <sip:olga@example.test>;tag=qb01",
            "Call-ID: quotbal.515@example.test",
            "CSeq: 1 INVITE",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.51.100.15;branch=z9hG4bKqb01",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("olga", "198.51.100.15", 47000, 15),
    )


def _plain(
    start: str, method: str, tag: str, extra: list[str] | None = None, body: bytes = b""
) -> bytes:
    """A simple request to the front desk with the given start line and extra headers."""
    headers = [
        "To: <sip:desk@callbridge.test>",
        f"From: <sip:caller@example.test>;tag={tag}",
        f"Call-ID: {tag}.7@example.test",
        f"CSeq: 7 {method}",
        "Max-Forwards: 70",
        f"Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK{tag}",
        *(extra or []),
        "Content-Length: <LEN>",
    ]
    return message(start, headers, body)


@case
def ltgtruri() -> bytes:
    """A Request-URI written inside '<' and '>'."""
    return _plain("INVITE <sip:desk@callbridge.test> SIP/2.0", "INVITE", "ltgt1")


@case
def lwsruri() -> bytes:
    """Whitespace inside the Request-URI (before a URI parameter)."""
    return _plain("INVITE sip:desk@callbridge.test; transport=udp SIP/2.0", "INVITE", "lwsr1")


@case
def lwsstart() -> bytes:
    """Several SP characters between the elements of the request line."""
    return _plain("OPTIONS   sip:desk@callbridge.test  SIP/2.0", "OPTIONS", "lwss1")


@case
def trws() -> bytes:
    """SP characters after the SIP-Version at the end of the request line."""
    return _plain("OPTIONS sip:desk@callbridge.test SIP/2.0  ", "OPTIONS", "trws1")


@case
def escruri() -> bytes:
    """An escaped header component ('?Route=...') in the Request-URI."""
    return _plain(
        "INVITE sip:desk@callbridge.test?Route=%3Csip:relay.example.test%3E SIP/2.0",
        "INVITE",
        "escr1",
    )


@case
def baddate() -> bytes:
    """A Date header in a time zone other than GMT."""
    return _plain(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        "OPTIONS",
        "bdat1",
        ["Date: Sat, 13 Mar 2021 09:30:00 PST"],
    )


@case
def regbadct() -> bytes:
    """A Contact URI containing '?' that is not enclosed in '<' '>'."""
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "To: <sip:pat@callbridge.test>",
            "From: <sip:pat@callbridge.test>;tag=rbc1",
            "Call-ID: regbadct.99@198.51.100.9",
            "CSeq: 3 REGISTER",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.51.100.9;branch=z9hG4bKrbc1",
            "Contact: sip:pat@198.51.100.9?Route=%3Csip:edge.callbridge.test%3E",
            "l: 0",
        ],
    )


@case
def badaspec() -> bytes:
    """Whitespace inside the angle brackets around the To URI."""
    return message(
        "OPTIONS sip:front.desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.16;branch=z9hG4bKbas1",
            "Max-Forwards: 70",
            "From: <sip:quinn@example.test>;tag=bas1",
            'To: "Desk, Front" < sip:front.desk@callbridge.test >',
            "Call-ID: badaspec.16@example.test",
            "CSeq: 2 OPTIONS",
            "Content-Length: 0",
        ],
    )


@case
def baddn() -> bytes:
    """An unquoted display name holding a character that is not a token character (',')."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.17;branch=z9hG4bKbdn1",
            "Max-Forwards: 70",
            "From: Front, Desk <sip:front@callbridge.test>;tag=bdn1",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: baddn.17@example.test",
            "CSeq: 2 OPTIONS",
            "Content-Length: 0",
        ],
    )


@case
def badvers() -> bytes:
    """A SIP version other than 2.0 in the request line and in Via."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/7.0",
        [
            "Via: SIP/7.0/UDP 198.51.100.18;branch=z9hG4bKbv70",
            "Max-Forwards: 70",
            "From: <sip:rita@example.test>;tag=bv70",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: badvers.18@example.test",
            "CSeq: 3 OPTIONS",
            "Content-Length: 0",
        ],
    )


@case
def mismatch01() -> bytes:
    """A known method whose CSeq names a different method."""
    return _plain("OPTIONS sip:desk@callbridge.test SIP/2.0", "INVITE", "mm01")


@case
def mismatch02() -> bytes:
    """An unknown method whose CSeq names a different (known) method."""
    return _plain(
        "FROBNICATE sip:desk@callbridge.test SIP/2.0",
        "INVITE",
        "mm02",
        ["Content-Type: text/plain"],
        b"frobnicate the desk\r\n",
    )


@case
def bigcode() -> bytes:
    """A response whose status code is far larger than three digits allow."""
    return message(
        "SIP/2.0 18446744073709551617 Overflowed",
        [
            "Via: SIP/2.0/UDP 198.51.100.19;branch=z9hG4bKbig1",
            "To: <sip:desk@callbridge.test>;tag=big1b",
            "From: <sip:sam@example.test>;tag=big1a",
            "Call-ID: bigcode.19@example.test",
            "CSeq: 1 INVITE",
            "Content-Length: 0",
        ],
    )


# ---------------------------------------------------------------------------------------------
# §3.2 transaction layer, §3.3 application layer, §3.4 backward compatibility
# ---------------------------------------------------------------------------------------------


@case
def badbranch() -> bytes:
    """A branch that is only the RFC 3261 magic cookie, so it cannot identify a transaction."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.40;branch=z9hG4bK",
            "Max-Forwards: 70",
            "From: <sip:tina@example.test>;tag=bbr1",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: badbranch.40@example.test",
            "CSeq: 4 OPTIONS",
            "Content-Length: 0",
        ],
    )


@case
def insuf() -> bytes:
    """A request without the mandatory To, From and Call-ID headers."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.41;branch=z9hG4bKins1",
            "CSeq: 1 INVITE",
            "Max-Forwards: 70",
            "Contact: <sip:uma@198.51.100.41>",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("uma", "198.51.100.41", 48000, 41),
    )


@case
def unkscm() -> bytes:
    """A Request-URI (and To) of a scheme nobody implements."""
    return _plain(
        "OPTIONS zork-proto:opaque.payload/with?bits=1 SIP/2.0",
        "OPTIONS",
        "unk1",
    ).replace(b"To: <sip:desk@callbridge.test>", b"To: <zork-proto:opaque.payload/with?bits=1>")


@case
def novelsc() -> bytes:
    """A Request-URI of a registered but unusual scheme (im:, RFC 3860)."""
    return _plain(
        "OPTIONS im:front.desk@callbridge.test SIP/2.0",
        "OPTIONS",
        "nov1",
    ).replace(b"To: <sip:desk@callbridge.test>", b"To: <im:front.desk@callbridge.test>")


@case
def unksm2() -> bytes:
    """URIs of unknown or non-SIP schemes in To (bare), From and Contact."""
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "To: urn:callbridge:desk:17",
            "From: <https://callbridge.test/people/victor>;tag=usm2",
            "Contact: <xmpp:victor@callbridge.test>",
            "Call-ID: unksm2.17@example.test",
            "CSeq: 17 REGISTER",
            "Max-Forwards: 70",
            "Via: SIP/2.0/UDP 198.51.100.43;branch=z9hG4bKusm2",
            "Content-Length: 0",
        ],
    )


@case
def bext01() -> bytes:
    """Require and Proxy-Require naming option tags no one supports."""
    return _plain(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        "OPTIONS",
        "bext1",
        [
            "Require: made-up-ext-one, made-up-ext-two",
            "Proxy-Require: no-proxy-knows-this",
        ],
    )


INVUT_TYPE = "application/x-callbridge-mystery"


@case
def invut() -> bytes:
    """A body of a Content-Type no one understands."""
    return _plain(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        "INVITE",
        "invut1",
        [f"Content-Type: {INVUT_TYPE}", "Contact: <sip:caller@198.51.100.7>"],
        b"<mystery>42</mystery>\r\n",
    )


@case
def regaut01() -> bytes:
    """A REGISTER whose Authorization uses an unknown scheme."""
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "To: <sip:wendy@callbridge.test>",
            "From: <sip:wendy@callbridge.test>;tag=rga1",
            "Max-Forwards: 70",
            "Call-ID: regaut01.23@198.51.100.23",
            "CSeq: 2 REGISTER",
            "Via: SIP/2.0/UDP 198.51.100.23;branch=z9hG4bKrga1",
            'Authorization: QuantumToken realm="callbridge.test", blob=QmFyZQ==',
            "Contact: <sip:wendy@198.51.100.23>",
            "Content-Length: 0",
        ],
    )


@case
def multi01() -> bytes:
    """Single-value headers (To, Call-ID, CSeq, Max-Forwards) present twice."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.24;branch=z9hG4bKmul1",
            "Max-Forwards: 70",
            "CSeq: 1 INVITE",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: multi01.24@example.test",
            "From: <sip:xena@example.test>;tag=mul1",
            "Max-Forwards: 69",
            "To: <sip:lobby@callbridge.test>",
            "Call-ID: multi01.25@example.test",
            "CSeq: 2 INVITE",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("xena", "198.51.100.24", 48500, 24),
    )


@case
def mcl01() -> bytes:
    """Two Content-Length headers (long and compact form) with different values."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.25;branch=z9hG4bKmcl1",
            "Max-Forwards: 70",
            "From: <sip:yuri@example.test>;tag=mcl1",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: mcl01.25@example.test",
            "CSeq: 5 OPTIONS",
            "Content-Length: 0",
            "Content-Type: text/plain",
            "l: <LEN>",
        ],
        b"which length is right?\r\n",
    )


@case
def bcast() -> bytes:
    """A valid 200 whose second Via sent-by is the broadcast address 255.255.255.255."""
    return message(
        "SIP/2.0 200 OK",
        [
            "Via: SIP/2.0/UDP 198.51.100.26;branch=z9hG4bKbc01",
            "Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bKbc02",
            "To: <sip:desk@callbridge.test>;tag=bc1b",
            "From: <sip:zoe@example.test>;tag=bc1a",
            "Call-ID: bcast.26@example.test",
            "CSeq: 6 OPTIONS",
            "Contact: <sip:desk@203.0.113.5>",
            "Content-Length: 0",
        ],
    )


@case
def zeromf() -> bytes:
    """Max-Forwards of zero."""
    return message(
        "OPTIONS sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.27;branch=z9hG4bKzmf1",
            "Max-Forwards: 0",
            "From: <sip:alba@example.test>;tag=zmf1",
            "To: <sip:desk@callbridge.test>",
            "Call-ID: zeromf.27@example.test",
            "CSeq: 1 OPTIONS",
            "Content-Length: 0",
        ],
    )


def _register(tag: str, contact: str) -> bytes:
    return message(
        "REGISTER sip:callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP 198.51.100.20;branch=z9hG4bK" + tag,
            "Max-Forwards: 70",
            "From: <sip:desk@callbridge.test>;tag=" + tag,
            "To: <sip:desk@callbridge.test>",
            f"Call-ID: {tag}.20@198.51.100.20",
            "CSeq: 12 REGISTER",
            f"Contact: {contact}",
            "Expires: 600",
            "Content-Length: 0",
        ],
    )


@case
def cparam01() -> bytes:
    """A Contact without '<' '>': the trailing ';oddparam' belongs to the header, not the URI."""
    return _register("cpa1", "sip:desk@198.51.100.20;oddparam")


@case
def cparam02() -> bytes:
    """A Contact in '<' '>': the ';oddparam' inside belongs to the URI."""
    return _register("cpa2", "<sip:desk@198.51.100.20;oddparam>")


@case
def regescrt() -> bytes:
    """A Contact URI carrying an escaped Route header component (legal in a Contact)."""
    return _register("rer1", "<sip:desk@198.51.100.20?Route=%3Csip:edge.callbridge.test%3E>")


SDP01_ACCEPT = "text/x-callbridge-nothing"


@case
def sdp01() -> bytes:
    """An INVITE with an SDP offer whose Accept admits no body type the answer could use."""
    return _plain(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        "INVITE",
        "sdp1",
        [
            f"Accept: {SDP01_ACCEPT}",
            "Contact: <sip:caller@198.51.100.7>",
            "Content-Type: application/sdp",
        ],
        sdp("caller", "198.51.100.7", 49000, 7),
    )


INV2543_CSEQ = 31


@case
def inv2543() -> bytes:
    """RFC 2543 style INVITE: no Max-Forwards, no branch, bare addr-specs, no From tag."""
    return message(
        "INVITE sip:desk@callbridge.test SIP/2.0",
        [
            "Via: SIP/2.0/UDP pc33.callbridge.test",
            "From: sip:bea@callbridge.test",
            "To: sip:desk@callbridge.test",
            "Call-ID: inv2543.33@pc33.callbridge.test",
            f"CSeq: {INV2543_CSEQ} INVITE",
            "Subject: legacy caller",
            "Contact: sip:bea@pc33.callbridge.test",
            "Content-Type: application/sdp",
            "Content-Length: <LEN>",
        ],
        sdp("bea", "192.0.2.99", 49500, 33),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    status = 0
    for name, build in CASES.items():
        path = HERE / f"{name}.dat"
        data = build()
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"differs: {path.name}")
                status = 1
        else:
            path.write_bytes(data)
    if not args.check:
        print(f"wrote {len(CASES)} messages to {HERE}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
