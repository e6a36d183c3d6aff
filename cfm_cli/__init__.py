"""The root ``cfm`` command."""
