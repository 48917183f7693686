"""callbridge.media."""
