"""Framework helpers every app shares (issue 12); they know no app."""
