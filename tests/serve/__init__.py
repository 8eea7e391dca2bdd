"""Web-UI tests."""
