"""mkdocs hook: the site's home page is the README (what scorehouse is and the guide), with its links to
docs/pages/ made relative to the site and its links to files outside the site written as plain names."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- README.md -->"


def on_page_markdown(markdown, page, config, files):
    if MARKER not in markdown:
        return markdown
    text = README.read_text().replace("](docs/pages/", "](")
    text = re.sub(r"\[([^\]]+)\]\((?!https?://)([^)#]+\.md)\)", lambda m: m.group(0) if "/" not in m.group(2)
                  and (Path(config["docs_dir"]) / m.group(2)).exists() else f"`{m.group(2)}`", text)
    return markdown.replace(MARKER, text)
