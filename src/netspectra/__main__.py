from netspectra.cli.main import run

run()
