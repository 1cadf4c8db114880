"""Implementations of :mod:`cotwatch.ports`: AWS (boto3) and in-memory."""
