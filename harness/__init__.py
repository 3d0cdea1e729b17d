"""What the tests and the concurrency lab share: Compose stacks of this
project driven from Python (harness.stack). Neither tests/ nor bench/ imports
the other; both import this."""
