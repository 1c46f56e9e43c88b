from netspectra.cli.main import main

main()
