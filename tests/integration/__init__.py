"""Integration tests: real processes (master, workers, launchers, CLIs), nameservers and servers on
127.0.0.1, and files written by them."""
