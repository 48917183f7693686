"""callbridge.calls."""
