"""Finite elements: meshes, spaces, the labelled UFL terms of a model, taxis."""
