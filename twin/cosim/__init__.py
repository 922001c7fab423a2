"""mosaik adapters: one thin simulator per core (agents, market, grid) and the world."""
