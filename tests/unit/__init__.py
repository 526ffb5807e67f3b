"""Unit tests of the pure parts: no sockets, no broker."""
