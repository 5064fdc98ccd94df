"""What the tests share: fake workers (fast, no training), run-directory writers and probes run as
scripts."""
