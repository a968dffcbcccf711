"""Background work: the dispatcher that drains the message queue, and periodic housekeeping."""
