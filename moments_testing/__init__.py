"""What the tests, the demo and the benchmark share: docs blocks, launchers, stand-ins."""
