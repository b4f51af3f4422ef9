"""News sources: one module per family. ``jekyll`` reads existing post files."""
