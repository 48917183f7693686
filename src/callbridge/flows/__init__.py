"""callbridge.flows."""
