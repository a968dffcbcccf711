"""SMPP 3.4 channel: PDU codec, receipts, ESME session, driver and an SMSC simulator."""
