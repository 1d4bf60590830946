"""Serving: an OpenAI-compatible HTTP server with continuous batching, input/output filters,
knowledge injection and the Studio playground (`python -m hyperclova.serve`, docs/serve.md)."""
