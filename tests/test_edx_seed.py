"""The EDX seed's three example scripts, unchanged but for the base URL and the key,
run against a live ``lockcore serve``; their printed output has the seed's shapes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .live import LiveService

pytestmark = pytest.mark.slow

SEED_URL = "https://edx.netl.doe.gov"

# Example 1: Lock and Unlock a Workspace (as printed in the seed).
EXAMPLE_1 = """
import requests
headers = {
"EDX-API-Key": 'YOUR_API_KEY_HERE',
"User-Agent": 'EDX-USER',
'Content-Type': 'application/json',
'Accept':'application/json'
}
data = {
'workspace_id': 'WORKSPACE-ID-HERE'
}
url = 'https://edx.netl.doe.gov/api/3/action/lock_workspace'
r = requests.post(
url, # URL to API endpoint
headers=headers, # Headers dictionary
json=data, # Dictionary of data params
)
r_json = r.json()
print (r.json())
"""

# Example 2: Lock and Unlock a Workspace with a Custom Note/Comment.
EXAMPLE_2 = """
import requests
headers = {
"EDX-API-Key": 'YOUR_API_KEY_HERE',
"User-Agent": 'EDX-USER',
'Content-Type': 'application/json',
'Accept':'application/json'
}
data = {
'workspace_id': 'WORKSPACE-ID-HERE',
'notes': "NOTE MESSAGE HERE" # custom note or message to add to the output of the script
}
url = 'https://edx.netl.doe.gov/api/3/action/lock_workspace' # endpoint to perform the lock or unlock action
r = requests.post(
url, # URL to API endpoint
headers=headers, # Headers dictionary
json=data, # Dictionary of data params
)
url = 'https://edx.netl.doe.gov/api/3/action/check_workspace_lock' # endpoint checking if workspace is locked
r2 = requests.post(
url, # URL to API endpoint
headers=headers, # Headers dictionary
json=data, # Dictionary of data params
)
print ("LOCK RESULT", r.json())
print ("CHECK RESULT", r2.json())
"""

# Example: Error Message Output when Performing a Lock Restricted Action.
EXAMPLE_3 = """
import requests
headers = {
"EDX-API-Key": 'YOUR-API-KEY-HERE',
"User-Agent": "EDX-USER"
}
data = {
"workspace_id": 'YOUR-WORKSPACE-NAME-OR-ID-HERE',
"folder_name": 'Test Folder 123',
"parent_id": 'ID-OF-DESTINATION-FOLDER-HERE'
}
url = 'https://edx.netl.doe.gov/api/3/action/create_folder'
r = requests.post(
url, # URL to API endpoint
headers=headers, # Headers dictionary
data=data, # Dictionary of data params
)
print (r.json())
print("End results")
"""


def run(script: str, base: str, key: str, workspace: str) -> list[str]:
    source = (
        script.replace(SEED_URL, base)
        .replace("YOUR_API_KEY_HERE", key)
        .replace("YOUR-API-KEY-HERE", key)
        .replace("WORKSPACE-ID-HERE", workspace)
        .replace("YOUR-WORKSPACE-NAME-OR-ID-HERE", workspace)
    )
    out = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.splitlines()


def printed(line: str, label: str = "") -> dict:
    return ast.literal_eval(line[len(label) :].strip())  # type: ignore[no-any-return]


def test_the_seeds_three_examples(tmp_path: Path) -> None:
    with LiveService(tmp_path) as svc:
        help_url = f"{svc.url}/api/3/action/help_show?name=workspace_lock_api"

        # Example 1, run twice: it locks, then it unlocks.
        (locked,) = run(EXAMPLE_1, svc.url, "demo-admin-key", "ws-1")
        assert printed(locked) == {"help": help_url, "success": True, "result": {"is_locked": True}}
        (unlocked,) = run(EXAMPLE_1, svc.url, "demo-admin-key", "ws-1")
        assert printed(unlocked) == {
            "help": help_url,
            "success": True,
            "result": {"is_locked": False},
        }

        # Example 2: lock with a note, then check.
        lock_line, check_line = run(EXAMPLE_2, svc.url, "demo-admin-key", "ws-1")
        assert lock_line.startswith("LOCK RESULT ") and check_line.startswith("CHECK RESULT ")
        lock = printed(lock_line, "LOCK RESULT")
        assert lock["success"] is True
        assert lock["result"] == {"is_locked": True, "notes": "NOTE MESSAGE HERE"}
        check = printed(check_line, "CHECK RESULT")
        assert check["success"] is True
        assert set(check["result"]) == {"is_locked", "locked_by", "date_locked", "notes"}
        assert check["result"]["is_locked"] is True
        assert check["result"]["locked_by"] == "EDX Administrator (admin@example.com)"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", check["result"]["date_locked"])
        assert check["result"]["notes"] == "NOTE MESSAGE HERE"

        # Example 3: another user's restricted action in the locked workspace (by name).
        error_line, end = run(EXAMPLE_3, svc.url, "demo-alice-key", "Carbon Storage Atlas")
        assert end == "End results"
        error = printed(error_line)
        assert error["success"] is False
        assert error["help"] == f"{svc.url}/api/3/action/help_show?name=create_folder"
        assert error["error"] == {
            "__type": "Validation Error",
            "message": "This workspace was locked by EDX Administrator (admin@example.com) and "
            "you cannot perform this action. It must be unlocked by the user who "
            "locked it.",
        }
