"""quantrac ingest: MQTT and file-drop readings, validated and stored exactly once."""
