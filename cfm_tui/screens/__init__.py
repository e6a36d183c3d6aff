"""The messenger's screens: sign-in, the main window, small prompts."""
