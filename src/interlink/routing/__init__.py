"""Routing: which endpoints an event goes to."""
