"""Reading customer uploads (bulk-send spreadsheets) safely, and writing safe CSV exports."""
