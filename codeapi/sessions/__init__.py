"""Sessions and their files, ids, names and the sweeper."""
