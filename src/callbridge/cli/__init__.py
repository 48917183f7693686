"""callbridge.cli."""
