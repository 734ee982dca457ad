"""Back-office page modules: each declares ``PAGE`` (registry.Page) and its ``router``."""
