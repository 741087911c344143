"""Simulated GitHub and Cloudflare servers: part of the product, used by tests and `flareship demo`."""
