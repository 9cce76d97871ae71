"""Stage 2, state: the SQLite file that makes ids, dates and documents' Last-Modified durable
(`store`), and the recovery of a damaged one (`salvage`). Imports nothing of publish or serve."""
