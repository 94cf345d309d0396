"""The team's own flows package."""
