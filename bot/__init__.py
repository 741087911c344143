"""Flareship: a GitHub App that ships pull requests to Cloudflare."""

__version__ = "0.1.0"
