"""Publishing: archive → files (Jekyll posts, JSON Lines; the site comes later)."""
