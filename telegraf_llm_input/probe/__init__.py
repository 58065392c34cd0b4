"""Synthetic streaming probe: what a client of the model server actually gets."""
