"""PETSc solvers: options, the SNES wrapper, monolithic and split Jacobians."""
