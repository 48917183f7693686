"""callbridge.config."""
