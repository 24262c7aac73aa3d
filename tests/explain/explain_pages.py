"""Reading a page of ``minivit explain`` back in the tests: its manifest."""

import json
import re

DATA = re.compile(r'<script type="application/json" id="minivit-data">(.*?)</script>', re.DOTALL)


def read_manifest(page) -> dict:
    """The JSON manifest inlined in the page file ``page``."""
    return json.loads(DATA.search(page.read_text()).group(1))
