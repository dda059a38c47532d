"""Applications on top of the Problem: CLI, plots, reports, rendering, sweeps, studies, meshes."""
