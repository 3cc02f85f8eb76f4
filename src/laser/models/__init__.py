"""Model architectures laser ships (the built-in digits CNN) and the factory mechanism."""
