"""Queue definitions: parsing and validating CRIC-style and short-format files."""
