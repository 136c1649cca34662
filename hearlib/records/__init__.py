"""Per-sample records: datasets and questions in, stages computed by the pipeline, the sharded
store they are written to (``hearlib run``), claims, and the head sets read back out of it."""
