"""The method itself: HeAr's attention function and engine, mean image keys/values, mask sampling,
ElasticNet attribution, the read-site measurements, and loading a checkpoint into an engine.

Nothing here knows about stores, notebooks or the organism."""
