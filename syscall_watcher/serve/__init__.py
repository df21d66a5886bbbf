"""`swatch serve`: one long-running consumer of what is pinned (metrics, JSON-lines log)."""
