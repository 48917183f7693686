"""callbridge.auth."""
