"""Channel drivers: the seam between messages and carriers (SMPP, WhatsApp, RCS, e-mail, sandbox)."""
