"""Who may do what: `eice.toml` and the pure permission predicates over it."""
