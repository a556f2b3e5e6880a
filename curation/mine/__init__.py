"""Step 4, mine: the daily hard-case batch, tagged and saved as a view."""
