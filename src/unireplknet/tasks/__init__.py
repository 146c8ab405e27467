"""Task models, heads and the task objects that the engine (:func:`unireplknet.engine.fit`) trains."""
