"""Prometheus metrics of the process, on one registry served at ``GET /metrics``.

Modules declare their metrics here so names stay consistent and unique. Label values must be
bounded sets (never call ids or tokens).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Media graph
MEDIA_FRAMES_DROPPED = Counter(
    "callbridge_media_frames_dropped_total",
    "Inbound audio frames a slow media consumer lost (its queue was full).",
    ["consumer"],
    registry=REGISTRY,
)
PLAYOUT_UNDERRUNS = Counter(
    "callbridge_playout_underrun_frames_total",
    "Playout ticks that had to emit silence or padding because no audio was queued mid-stream.",
    registry=REGISTRY,
)

# Event bus
BUS_EVENTS_PUBLISHED = Counter(
    "callbridge_bus_events_published_total",
    "Events published on the event bus.",
    registry=REGISTRY,
)
BUS_EVENTS_DROPPED = Counter(
    "callbridge_bus_events_dropped_total",
    "Events a bus subscriber lost because its bounded queue was full.",
    registry=REGISTRY,
)

# Store
STORE_WRITES_FAILED = Counter(
    "callbridge_store_writes_failed_total",
    "Store writes given up after their retries (the store stayed busy); each is also logged.",
    ["kind"],
    registry=REGISTRY,
)

# Calls
CALLS_ACTIVE = Gauge(
    "callbridge_calls_active",
    "Calls not yet hung up in this process.",
    registry=REGISTRY,
)
CALLS_TOTAL = Counter(
    "callbridge_calls_total",
    "Calls ended, by direction and hangup reason.",
    ["direction", "hangup_reason"],
    registry=REGISTRY,
)
FLOW_ACTIONS = Counter(
    "callbridge_flow_actions_total",
    "Flow actions executed, by type and outcome.",
    ["type", "outcome"],
    registry=REGISTRY,
)

# HTTP
HTTP_REQUESTS = Counter(
    "callbridge_http_requests_total",
    "HTTP requests served, by method and status class.",
    ["method", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "callbridge_http_request_seconds",
    "HTTP request latency.",
    registry=REGISTRY,
)
WEBSOCKETS_ACTIVE = Gauge(
    "callbridge_websocket_sessions_active",
    "WebSocket sessions open.",
    registry=REGISTRY,
)

GC_PAUSES = Histogram(
    "callbridge_gc_pause_seconds",
    "Pauses of the garbage collector (the event loop stops for their duration).",
    ["generation"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5),
    registry=REGISTRY,
)
