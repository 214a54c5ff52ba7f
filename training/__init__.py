"""Data loading, training, back-testing, reports and the `promise` command line."""
