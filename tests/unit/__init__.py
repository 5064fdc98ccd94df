"""Unit tests: one module or function at a time, no processes, servers or sockets."""
