"""standards layer."""
