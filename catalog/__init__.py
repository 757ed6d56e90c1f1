"""Catalog: databases and ACID Delta tables over a metadata store, the locked engine, ingestion."""
