"""The fraud guard: SMS-pumping and toll-fraud rules screening every OTP send (docs/adr/0016)."""
