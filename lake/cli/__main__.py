"""`python -m lake.cli`: the `lake` command (how `lake serve --background` starts itself)."""

from lake.cli import main

main()
