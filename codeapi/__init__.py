"""codeapi: a self-hosted, LibreChat-compatible Code Interpreter API."""

__version__ = "0.1.0"
