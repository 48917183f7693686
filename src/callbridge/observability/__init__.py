"""callbridge.observability."""
