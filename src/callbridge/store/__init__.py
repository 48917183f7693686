"""callbridge.store."""
