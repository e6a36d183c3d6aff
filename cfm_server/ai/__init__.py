"""AI contacts: personas that are always online."""
