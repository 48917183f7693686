"""callbridge.rtp: RTP/RTCP packets, RFC 4733 DTMF, the sans-I/O RTP session and RTP legs.

``packet``, ``dtmf``, ``session`` and ``port_pool`` are sans-I/O; ``leg`` is the asyncio shell
(:class:`~callbridge.rtp.leg.RtpLeg`). Import the leg from its module.
"""
