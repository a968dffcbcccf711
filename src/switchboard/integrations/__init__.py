"""CRM integrations, one package each; they act through the services, never the SQL store."""
