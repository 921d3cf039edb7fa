"""Outbound delivery: signing and sending events to subscriber endpoints, with retries."""
