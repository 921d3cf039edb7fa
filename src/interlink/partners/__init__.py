"""Partner kits' shared parts: OAuth connections, the token manager and the partner API client."""
