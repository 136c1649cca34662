"""Model families: the :class:`~hearlib.families.registry.Family` record and registry, where each
family's image tokens sit (geometry), the checkpoints hearlib refuses and why, coverage checks, and
tiny random-weight models of every family for tests."""
