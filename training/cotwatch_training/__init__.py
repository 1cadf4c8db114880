"""cotwatch's training-time code: synthetic data, head and calibration fitting, evaluation (the ``train`` extra).

Nothing here ships in the Lambda layer or the scorer image; it imports the runtime package, never the reverse.
"""
