"""The search page against the real stack answers every query the JSON API answers: a long
query (longer than any filename can be) is searched, not refused as a filename, and a page
link search does not recognise is the caller's mistake (400 saying so), not "searching is
unavailable"."""

from __future__ import annotations

import re


def _error_text(html: str) -> list[str]:
    return re.findall(r'id="(?:error-message|search-error)"[^>]*>([^<]*)', html)


def test_a_query_longer_than_any_filename_is_searched_on_the_page_as_in_the_api(gateway_url, http):
    query = "cat " * 100  # 400 bytes: over the 255-byte limit of a filename

    api = http.get(f"{gateway_url}/api/search", params={"q": query})
    page = http.get(f"{gateway_url}/search", params={"q": query})

    assert api.status_code == 200, api.text
    assert page.status_code == 200, _error_text(page.text)
    assert "filename" not in " ".join(_error_text(page.text))


def test_a_page_link_search_did_not_issue_is_a_400_not_search_unavailable(gateway_url, http):
    page = http.get(f"{gateway_url}/search", params={"q": "cat", "page": "zzz"})

    assert page.status_code == 400
    errors = " ".join(_error_text(page.text))
    assert "page_token" in errors
    assert "unavailable" not in errors
