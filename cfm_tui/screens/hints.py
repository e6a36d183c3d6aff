"""What the main window says when there is nowhere to type, or nothing open."""

HINT_EVERY_S = 5.0
NOWHERE_TO_TYPE = (
    "Nothing to type into here: open a conversation (Enter on a contact or room), "
    "F5 to add a contact, F6 to join a room. Commands like /add go in a conversation."
)
# Narrow, with the list on screen, the keys are not typed anywhere: say so (not that
# they went into the conversation, which then holds nothing).
CHAT_HIDDEN = "Not typed: the conversation is hidden at this width. F2 shows it, then type."
EMPTY_HINT = (
    "No conversation open.\n\n"
    "Pick a contact or a room in the list and press Enter,\n"
    "F5 to add a contact, F6 to join a room, Ctrl+P for every command."
)
