"""`python -m tillit.cli`: the same command line as `tillit`, for when the script is not installed."""

from tillit.cli import main

main()
