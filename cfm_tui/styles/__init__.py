"""The Textual stylesheets of `cfm chat` (a package so that the .tcss files ship in wheels)."""
