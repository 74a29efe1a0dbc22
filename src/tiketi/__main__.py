from tiketi.cli import main

main()
