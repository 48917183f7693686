"""callbridge.legs."""
