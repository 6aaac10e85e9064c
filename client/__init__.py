"""FedHydra client package."""
