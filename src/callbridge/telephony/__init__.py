"""callbridge.telephony: calls over SIP — the glue between the SIP user agent
(:mod:`callbridge.sip`), RTP legs (:mod:`callbridge.rtp`) and the call service."""
