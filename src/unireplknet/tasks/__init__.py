"""Task models, heads and training loops built on the UniRepLKNet backbone."""
