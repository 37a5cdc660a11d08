from doppelkit.cli import main

main()
