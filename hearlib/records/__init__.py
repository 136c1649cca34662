"""Per-sample records: datasets and questions in, the stages the pipeline computes for one sample,
the sharded store they are written to, claims that share the work between processes, and the head
sets read back out of a store (``hearlib heads``). Nothing here knows the paper's plan or figures."""
