"""Partner kits: what Interlink knows of one partner (kits, normalizers, the normalization
stage) and their shared parts (OAuth connections, the token manager, the partner API client)."""
