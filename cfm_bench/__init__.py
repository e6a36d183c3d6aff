"""``cfm bench``: a load generator that sizes a cfm server, and its bare baseline."""
