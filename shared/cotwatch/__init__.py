"""cotwatch: a serverless chain-of-thought monitor for reasoning models."""

__version__ = "0.1.0"
