"""What the training jobs run: each job's config dataclass and run function, so the library (a sweep's
trial, a benchmark) calls them without importing the command-line package ``jobs`` (a thin CLI shim each)."""
