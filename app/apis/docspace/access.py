"""What each access level in a DocSpace room may do to a file, before locks are
considered, and the security flags a file shows."""

from __future__ import annotations

ROOM_MANAGER, CONTENT_CREATOR = "RoomManager", "ContentCreator"

#: What each access level may do to a file, before locks are considered.
ABILITIES: dict[str, set[str]] = {
    ROOM_MANAGER: {
        "Read",
        "Comment",
        "FillForms",
        "Review",
        "Edit",
        "Delete",
        "CustomFilter",
        "EditHistory",
        "Rename",
        "ReadHistory",
        "Lock",
        "Move",
        "Duplicate",
        "Copy",
        "Download",
        "Convert",
    },
    CONTENT_CREATOR: {
        "Read",
        "Comment",
        "FillForms",
        "Review",
        "Edit",
        "Delete",
        "Rename",
        "ReadHistory",
        "Lock",
        "Move",
        "Duplicate",
        "Copy",
        "Download",
        "Convert",
    },
    "Editor": {
        "Read",
        "Comment",
        "FillForms",
        "Review",
        "Edit",
        "ReadHistory",
        "Copy",
        "Download",
        "Convert",
    },
    "Reviewer": {"Read", "Comment", "Review", "ReadHistory", "Copy", "Download"},
    "Commenter": {"Read", "Comment", "Copy", "Download"},
    "FormFiller": {"Read", "FillForms", "Copy", "Download"},
    "Viewer": {"Read", "Copy", "Download"},
}
SECURITY_FLAGS = (
    "Read",
    "Comment",
    "FillForms",
    "Review",
    "Edit",
    "Delete",
    "CustomFilter",
    "EditHistory",
    "Rename",
    "ReadHistory",
    "Lock",
    "Move",
    "Duplicate",
    "Copy",
    "Download",
    "Convert",
)
#: Flags that stay while someone else holds the lock; every other one is an edit.
READ_FLAGS = {"Read", "ReadHistory", "Copy", "Download"}

#: The access levels, as the catalog names them.
ACCESS_LEVELS = tuple(ABILITIES)
