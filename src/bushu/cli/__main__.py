from bushu.cli import app

app()
