"""Built-in plugins of harness, installed under the name ``harness_plugins``."""
