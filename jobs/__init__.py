"""micro-moments PyFlink wiring: sources, watermarks, operators, sinks and CLI entry points."""
