"""Step 6, retrain: champion/challenger retraining, promotion and its report."""
