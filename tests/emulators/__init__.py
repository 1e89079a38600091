"""Local emulators of Google Cloud Storage, BigQuery and Vertex AI batch
prediction, so the real Google client libraries can be tested offline.

- ``gcs.start_gcs`` / ``bigquery.start_bigquery``: subprocess emulators
  installed by ``bash tests/emulators/setup.sh`` into ``<repo>/.emulators``.
- ``vertex.VertexEmulator``: an in-process batch prediction emulator.
- ``fixtures``: pytest fixtures wrapping all three.
"""
