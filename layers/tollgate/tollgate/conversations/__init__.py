"""Conversations (S8b): multi-turn chat kept on the server, each turn a metered generation."""
