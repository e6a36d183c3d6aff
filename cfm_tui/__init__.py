"""``cfm chat``: the MSN Messenger window in the terminal."""
