"""One module per dashboard tab; each builds its view from a `Dashboard` state."""
