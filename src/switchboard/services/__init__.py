"""Use cases, one module per feature; they depend on the domain and on seam protocols only."""
