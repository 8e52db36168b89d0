"""quantrac simulator: realistic station traffic for demos, tests and benchmarks."""
