"""Loading data into tables: crawl folders, ingest files and queries, exactly-once streams."""
