"""auth layer."""
