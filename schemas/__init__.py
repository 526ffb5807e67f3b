"""Avro schemas, shipped inside the wheel as the package `consumer.schema_files`
(see pyproject.toml) and read with importlib.resources. This folder is the one copy:
the service, the tests and downstream readers share it."""
