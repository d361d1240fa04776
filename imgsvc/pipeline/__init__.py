"""The job's way, in order."""
