"""Offline benchmark tasks: problems, a noisy policy that solves them, and exact step checkers."""
