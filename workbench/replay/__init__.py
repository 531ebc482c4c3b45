"""Replay: turn events into the order a live system would have seen questions and answers."""
