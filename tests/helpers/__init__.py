"""Test helpers shipped beside the tests: real SMTP sinks, a cuttable TCP proxy, service
processes, and a private FerretDB to stop."""
