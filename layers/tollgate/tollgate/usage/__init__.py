"""Usage (S9): the usage log every request leaves, and what analytics read from it."""
