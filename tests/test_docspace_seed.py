"""The DocSpace seed's Python sample, unchanged but for API_HOST and API_KEY, against a
live ``lockcore serve``: it runs clean, and each of its three calls answers as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .live import LiveService

pytestmark = pytest.mark.slow

# The sample as printed in seed 002 (its "Full example", Python tab), where the whole
# block sits two spaces in, inside its tab, except one comment line.
SAMPLE_AS_PRINTED = """\
  import requests

  # Set API base URL
  API_HOST = 'https://yourportal.onlyoffice.com'
  API_KEY = 'your_api_key'

  # Headers with API key for authentication
  HEADERS = {
    'Authorization': f'Bearer {API_KEY}',
    'Content-Type': 'application/json'
  }

  # Step 1: Lock a file by ID
  def lock_file(file_id):
    url = f'{API_HOST}/api/2.0/files/file/{file_id}/lock'
    data = { 'lockFile': True }

    response = requests.put(url, headers=HEADERS, json=data)

    if response.status_code == 200:
      return response.json()
    else:
      print(f"File lock failed. Status code: {response.status_code}, Message: {response.text}")
      return None

  # Step 2: Unlock a file by ID
  def unlock_file(file_id):
    url = f'{API_HOST}/api/2.0/files/file/{file_id}/lock'
    data = { 'lockFile': False }

    response = requests.put(url, headers=HEADERS, json=data)

    if response.status_code == 200:
      return response.json()
    else:
      print(f"File unlock failed. Status code: {response.status_code}, Message: {response.text}")
      return None

# Step 3: View users with access to the file
  def get_protected_file_users(file_id):
    url = f'{API_HOST}/api/2.0/files/file/{file_id}/protectusers'
    response = requests.get(url, headers=HEADERS)
    if response.status_code == 200:
      return response.json()
    else:
      print(f"Protected file users retrieval failed. Status code: {response.status_code}, Message: {response.text}")
      return None

  if __name__ == "__main__":
    file_id = '123456'  # Replace with a valid file ID

    lock_file(file_id)
    unlock_file(file_id)
    get_protected_file_users(file_id)
"""
# What a reader copies out of the rendered page: the block without its two-space margin.
SAMPLE = (
    "\n".join(
        line[2:] if line.startswith("  ") else line for line in SAMPLE_AS_PRINTED.splitlines()
    )
    + "\n"
)


def configured(base: str, key: str) -> str:
    return SAMPLE.replace("'https://yourportal.onlyoffice.com'", repr(base)).replace(
        "'your_api_key'", repr(key)
    )


CHECK_CALLS = """
import json
locked = lock_file('123456')
unlocked = unlock_file('123456')
users = get_protected_file_users('123456')
print(json.dumps([locked, unlocked, users]))
"""


def test_the_seed_sample_runs_unchanged(tmp_path: Path) -> None:
    with LiveService(tmp_path) as svc:
        source = configured(svc.url, "demo-alice-key")
        run = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout == ""  # the sample prints only failures

        # The same functions, with their answers checked.
        module = source.replace('if __name__ == "__main__":', "if False:")
        out = subprocess.run(
            [sys.executable, "-c", module + CHECK_CALLS],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    locked, unlocked, users = json.loads(out.stdout)
    assert locked["statusCode"] == 200 and locked["status"] == 0 and locked["count"] == 1
    assert locked["response"]["id"] == 123456 and locked["response"]["locked"] is True
    assert locked["links"] == [
        {"href": f"{svc.url}/api/2.0/files/file/123456/lock", "action": "PUT"}
    ]
    assert unlocked["statusCode"] == 200 and "locked" not in unlocked["response"]
    assert [(u["id"], u["access"]) for u in users["response"]] == [
        ("bob", "ContentCreator"),
        ("carol", "Viewer"),
    ]
    assert all(set(u) >= {"id", "name", "email", "hasAccess"} for u in users["response"])
