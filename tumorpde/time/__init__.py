"""Time integration: BDF coefficients, step control, couplings between compartments."""
