"""Running jobs for a request: the one pipeline, programs, warm Python, outputs and accounting."""
