"""The web console at /console/: the customer dashboard and the operator admin, server-rendered."""
