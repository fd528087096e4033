"""Score ingestion: API keys, the submit endpoint, and applying events to the score table."""
