"""The package cites only files it contains: no ``MATH.md``, no ``../shared``; every cited
section of ``docs/conventions.md`` exists."""
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0 and out.stdout.strip():
        names = out.stdout.split()
    else:   # not a git checkout: walk the tree
        names = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT)
                 for f in fs if ".git" not in d]
    return [n for n in names if n.endswith((".py", ".md", ".ipynb", ".tex", ".toml", ".sh"))
            and os.path.exists(os.path.join(ROOT, n))]


def test_no_citation_of_files_outside_the_repository():
    this = os.path.relpath(__file__, ROOT)
    bad = []
    for name in _tracked_files():
        if name == this:
            continue
        text = open(os.path.join(ROOT, name), encoding="utf-8", errors="replace").read()
        for pattern in ("MATH.md", "../shared", "shared/MATH"):
            if pattern in text:
                bad.append(f"{name}: {pattern}")
    assert not bad, bad


def test_cited_sections_exist():
    """Every ``conventions.md §N`` or ``§N.M`` cited (also in a list ``§1, §2.1``) is a heading
    ``## N.`` or ``### N.M`` of the document."""
    doc = open(os.path.join(ROOT, "docs", "conventions.md"), encoding="utf-8").read()
    sections = set(re.findall(r"^## (\d+)\.", doc, flags=re.M))
    assert sections == {"1", "2", "3", "4", "5", "6"}
    sections |= set(re.findall(r"^### (\d+\.\d+) ", doc, flags=re.M))
    bad = []
    for name in _tracked_files():
        text = open(os.path.join(ROOT, name), encoding="utf-8", errors="replace").read()
        for cites in re.findall(r"conventions\.md`{0,2} ?(§[\d.]+(?:(?:,| and|-) ?§?[\d.]+)*)",
                                text):
            for cited in re.findall(r"\d+(?:\.\d+)?", cites):
                if cited not in sections:
                    bad.append(f"{name} cites §{cited}")
    assert not bad, bad
