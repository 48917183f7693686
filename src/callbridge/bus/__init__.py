"""callbridge.bus."""
