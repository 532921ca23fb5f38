"""The report: tables recomputed from the evaluation files, and one HTML page."""
