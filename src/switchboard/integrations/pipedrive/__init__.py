"""The Pipedrive Marketplace app: OAuth install, settings, single and bulk SMS, campaign report."""
