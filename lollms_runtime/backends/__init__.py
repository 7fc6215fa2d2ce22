"""Model backends: the contracts in :mod:`.base`, implementations registered by plugins."""
