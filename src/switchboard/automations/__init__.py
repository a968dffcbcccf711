"""Event-driven SMS automations: events in, templated sends out, delayed jobs kept in the database."""
