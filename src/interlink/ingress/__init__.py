"""Inbound webhooks: receiving partner requests, verifying their signatures and accepting them."""
