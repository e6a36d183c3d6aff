"""The cfm relay server (``cfm serve``) and its AI contacts."""
