"""Detection: windowing, embedding, per-category scoring, calibration and disposition of trace chunks."""
