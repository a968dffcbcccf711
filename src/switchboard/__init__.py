"""Switchboard: a self-hosted CPaaS, wire-compatible with the Message Central API."""

from __future__ import annotations

__version__ = "0.1.0"
