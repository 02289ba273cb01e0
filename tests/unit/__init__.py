"""The unit tier: the real services on in-memory port fakes; no sockets, no processes."""
