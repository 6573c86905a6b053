"""The IP table: parsing, snapshots, sources and the reloader (imports nothing above it)."""
