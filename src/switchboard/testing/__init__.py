"""Fakes shipped with the package: loopback peers that speak the providers' wire formats."""
