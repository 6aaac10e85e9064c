"""FedHydra shared package."""
