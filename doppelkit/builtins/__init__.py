"""Built-in components. They register through the same hooks as third-party plugins."""
