"""FedHydra server package."""
