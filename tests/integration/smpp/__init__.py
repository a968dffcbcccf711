"""SMPP integration tests over loopback TCP: the built-in simulator and the npm smpp peer."""
