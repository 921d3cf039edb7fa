"""Interlink: verified webhook ingest, routing and reliable signed delivery."""

__version__ = "0.1.0"
