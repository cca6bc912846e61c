"""Settings, errors, limits and metrics shared by every route and service."""
