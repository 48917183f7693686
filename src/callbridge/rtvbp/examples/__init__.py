"""Runnable RTVBP handler examples: ``echo``, ``ivr`` (DTMF menu with tones), ``barge_in``."""
