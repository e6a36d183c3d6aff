"""The messenger's widgets: each renders a piece of ChatState and posts messages up."""
