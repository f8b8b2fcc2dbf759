"""Local stand-ins for external services, for tests and benchmarks (loopback only)."""
