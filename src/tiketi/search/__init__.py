"""Event search: full text with a typo-tolerant fallback, filters and keyset pages."""
