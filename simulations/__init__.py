"""FedHydra simulations package."""
