"""callbridge.server."""
