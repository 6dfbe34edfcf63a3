"""Results: the record schema, reading and writing records, scores, the protocol lock,
the archive and tamper evidence."""
