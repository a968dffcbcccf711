"""The Shopify app: OAuth install, signed webhooks, compliance topics; events for the automations."""
