"""Outbound customer callbacks: signing secrets, the SSRF address policy and the HTTP sender."""
